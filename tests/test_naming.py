"""Run names and descriptions: what the MLflow UI shows of a command's run."""

from __future__ import annotations

from lfxai.cli.naming import MAX_NAME_VALUE, Request, describe, run_name, show

REQUEST = Request(
    entry_point="mnist",
    experiment="roar_test",
    profile="smoke",
    declared={"name": "roar_test", "profile": "smoke"},
    argv=["--name", "roar_test", "--note", "two words"],
)


def test_show_writes_lists_and_tuples_comma_separated_and_the_rest_as_str():
    assert show([5, 10, 20]) == "5,10,20"
    assert show(("a", "b")) == "a,b"
    assert show([]) == ""
    assert show(0.001) == "0.001" and show(None) == "None" and show("x,y") == "x,y"


def test_a_run_name_puts_number_profile_and_settings_before_the_experiment():
    settings = {"seed": 3, "data_dir": "/data", "k": [5, 10]}
    name = run_name("consistency_features", "smoke", settings, 4)
    assert name == "#4 smoke seed=3 k=5,10 · consistency_features"  # no data_dir
    assert run_name("roar_test", "paper", {}, 1) == "#1 paper · roar_test"


def test_a_long_value_is_cut_to_the_limit_with_an_ellipsis():
    exact, longer = "a" * MAX_NAME_VALUE, "b" * (MAX_NAME_VALUE + 1)
    assert MAX_NAME_VALUE == 24
    name = run_name("e", "quick", {"exact": exact, "longer": longer}, 2)
    assert name == f"#2 quick exact={exact} longer={'b' * (MAX_NAME_VALUE - 1)}… · e"


def test_the_command_line_is_the_entry_points_module_with_its_arguments_quoted():
    expected = "python -m entrypoints.mnist --name roar_test --note 'two words'"
    assert REQUEST.command_line() == expected


def test_rerun_gives_the_declared_parameters_then_the_settings_which_win_on_a_clash():
    line = REQUEST.rerun({"seed": 3, "profile": "quick", "note": "a b"})
    assert line == (
        "mlflow run . -e mnist -P name=roar_test -P profile=quick -P seed=3 -P 'note=a b'"
    )


def test_rerun_prefixes_the_environment_with_only_the_values_quoted():
    environment = {"MLFLOW_TRACKING_URI": "sqlite:///my store.db", "A": "b"}
    line = REQUEST.rerun({}, environment)
    assert line == (
        "MLFLOW_TRACKING_URI='sqlite:///my store.db' A=b "
        "mlflow run . -e mnist -P name=roar_test -P profile=smoke"
    )


def test_a_description_gives_the_headline_command_rerun_and_the_changed_settings():
    text = describe(
        REQUEST,
        "ROAR on MNIST.",
        {"seed": 3},
        {"seed": (3, 42), "k": ([5, 10], [10, 20])},
        notes=["First note.", "Second note."],
    )
    assert text.split("\n") == [
        "ROAR on MNIST.",
        "",
        "Command line: `python -m entrypoints.mnist --name roar_test --note 'two words'`",
        "",
        "Rerun with: `mlflow run . -e mnist -P name=roar_test -P profile=smoke -P seed=3` "
        "(add `--env-manager local` without conda)",
        "",
        "Settings that differ from the `smoke` profile:",
        "",
        "| setting | this run | profile |",
        "|---|---|---|",
        "| seed | 3 | 42 |",
        "| k | 5,10 | 10,20 |",
        "",
        "First note.",
        "",
        "Second note.",
    ]


def test_a_description_without_changes_or_unresolved_says_so():
    same = describe(REQUEST, "h", {}, {}, rerun_label="Continue with", environment={"A": "1"})
    assert "Continue with: `A=1 mlflow run . -e mnist" in same
    assert same.endswith("\n\nAll settings are the `smoke` profile's.")
    unresolved = describe(REQUEST, "h", {}, None)
    assert unresolved.endswith(
        "\n\nThe settings were not resolved (bad input: see the tag `lfxai.error`)."
    )
    assert "differ" not in same + unresolved
