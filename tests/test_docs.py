from __future__ import annotations

from loop import docs


def test_readme_generated_sections_are_fresh() -> None:
    """README's CLI and config references are generated; this fails when the code moved on."""
    assert docs.main(["--check"]) == 0


def test_readme_names_the_two_commands_and_ci_runs_the_test_one() -> None:
    readme = docs.README.read_text()
    assert "make demo" in readme and "make test" in readme
    ci = (docs.README.parent / ".ci" / "run").read_text()
    assert "make test" in ci


def test_cli_reference_covers_every_command() -> None:
    from loop.cli import cli

    text = docs.cli_reference_markdown()
    for path, _ in docs._commands(cli):
        assert f"#### `pickloop {' '.join(path)}`" in text
