"""Ready-to-build deployment bundles: TFLite Micro (microcontrollers) and ONNX Runtime (Linux boards)."""

from firmware_export._bundle import BundleInfo
from firmware_export.api import FORMATS, export_tflite_file, export_trial
from firmware_export.locate import trial_artifacts
from firmware_export.onnx_bundle import export_onnx_bundle
from firmware_export.tflm import BuildRequest, export_tflm_bundle

__all__ = [
    "FORMATS",
    "BuildRequest",
    "BundleInfo",
    "export_onnx_bundle",
    "export_tflite_file",
    "export_tflm_bundle",
    "export_trial",
    "trial_artifacts",
]
