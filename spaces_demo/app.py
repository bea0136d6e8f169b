"""hf-cmah on a Hugging Face Space: the service's app (JSON API + Gradio page), run by uvicorn on port 7860.

Set HF_CMAH_MODEL and HF_CMAH_INDEX (Hub ids or folders) in the Space's settings to serve a
library of your own; without them it serves the quickstart's sample library, built once.
"""

import os
import sys

from hf_cmah.cli import main

if __name__ == "__main__":
    host = os.environ.get("HF_CMAH_HOST", "0.0.0.0")  # a Space serves on all interfaces; tests bind 127.0.0.1
    port = os.environ.get("PORT", "7860")
    sys.exit(main(["serve", "--host", host, "--port", port, *sys.argv[1:]]))
