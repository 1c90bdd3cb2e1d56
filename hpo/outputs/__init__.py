"""What a finished study gives: its best configs as files, a trained model's predictions, and
the model exported for deployment.

`configs` (best trials -> YAML configs and back), `predict` (colours from a trained model folder
or an exported file), `model_export` (`vcr-hpo export`: parity-checked files) over
`model_formats` (ONNX, TorchScript by name). Modules import on use: this package re-exports
nothing.
"""
