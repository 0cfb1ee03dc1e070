"""tinyfront's user-facing faces: the CLI (``tinyfront``), the Streamlit app and the IPython magics."""
