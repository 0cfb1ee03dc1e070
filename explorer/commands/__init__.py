"""Sub-commands of the ``tinyfront`` CLI, one module each."""
