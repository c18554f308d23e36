"""``python -m lfxai.tracking``: creates / migrates the store runs go to (``make store``).

Prints the store and the ``mlflow ui`` command that opens it with the same artifact root.
"""

from lfxai.redact import redact
from lfxai.tracking.store import absolute_uri, init_store, ui_command

if __name__ == "__main__":
    uri = absolute_uri(init_store())
    print(f"MLflow store ready: {redact(uri)}")
    print(f"Browse it: {ui_command(uri)}")
