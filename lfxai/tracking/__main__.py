"""``python -m lfxai.tracking``: creates / migrates the store runs go to (``make store``)."""

from lfxai.tracking.store import init_store

if __name__ == "__main__":
    print(f"MLflow store ready: {init_store()}")
