"""Import TensorFlow without the C++ start-up chatter on stderr.

TensorFlow 2.21 prints absl/oneDNN notices from C++ at import time, whatever TF_CPP_MIN_LOG_LEVEL
says. Command-line tools promise one clear line per problem, so they import it through here.
"""

from __future__ import annotations

import os
import sys


def import_tensorflow():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import tensorflow
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    return tensorflow
