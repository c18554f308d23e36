"""lfxai.redact: every form of credential is masked, parsable or not; nothing else changes."""

from __future__ import annotations

import os

import pytest

from lfxai.redact import has_secret, redact

SECRET = "s3cret"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # a password in the user part, in a URL that parses and in one that does not
        (f"postgresql+psycopg://user:{SECRET}@db:5432/optuna", "user:***@db:5432/optuna"),
        (f"postgresql+psycopg://user:{SECRET}@127.0.0.1:notaport/db", "user:***@127.0.0.1:"),
        (f"redis://:{SECRET}@host:6379/0", "redis://:***@host"),
        # an unencoded '@' inside the password: everything up to the last '@' is masked
        (f"postgresql://user:{SECRET}@x@db/optuna", "postgresql://user:***@db/optuna"),
        # key-value secrets: query parameters, libpq keywords, variables, headers
        (f"sqlite:////tmp/optuna.db?password={SECRET}&mode=ro", "?password=***&mode=ro"),
        (f"postgresql://db/optuna?sslmode=require&pass={SECRET}", "&pass=***"),
        (f"https://host/api?token={SECRET}", "?token=***"),
        (f"host=db user=optuna password={SECRET}", "user=optuna password=***"),
        (f"MLFLOW_TRACKING_PASSWORD={SECRET} mlflow run .", "PASSWORD=*** mlflow run"),
        (f"Authorization: Bearer {SECRET}", "Authorization: Bearer ***"),
        # inside an error message, quoted
        (f"storage 'postgresql://u:{SECRET}@h/db' cannot be opened", "'postgresql://u:***@h/db'"),
    ],
)
def test_each_form_of_credential_is_masked(text, expected):
    shown = redact(text)
    assert SECRET not in shown
    assert expected in shown
    assert has_secret(text)


@pytest.mark.parametrize(
    "text",
    [
        "http://127.0.0.1:5000",
        "postgresql+psycopg://optuna@db-host/optuna",  # a user without password: libpq
        "sqlite:////abs/mlflow.db",
        "file:///work/main",
        "n_passes=3 tokenizer=bpe",  # keys that only contain a secret's name
        "mlflow server --app-name basic-auth --host 127.0.0.1",
    ],
)
def test_text_without_credentials_is_unchanged(text):
    assert redact(text) == text
    assert not has_secret(text)


def test_a_store_uri_with_a_credential_is_never_printed(mlflow_store, monkeypatch, capsys):
    from lfxai import tracking
    from lfxai.tracking import ResumeRefused, check_resumable, init_store

    monkeypatch.setenv("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "false")  # restored after
    uri = f"https://user:{SECRET}@tracking-host:5000"
    init_store(uri)  # MLflow's own "View run at <uri>" lines are switched off
    assert os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] == "true"
    monkeypatch.setattr(tracking.store, "tracking_uri", lambda: uri)
    with pytest.raises(ResumeRefused, match=r"no such run in the store https://user:\*\*\*@") as e:
        check_resumable("0" * 32, {}, lambda logged: [])
    assert SECRET not in str(e.value)
