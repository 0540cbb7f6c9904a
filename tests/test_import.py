import subprocess
import sys


def test_import_is_light():
    code = "import sys, sightql; print(sorted(m for m in ('torch', 'onnxruntime', 'torchvision', 'keras', 'fastapi', 'uvicorn') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
