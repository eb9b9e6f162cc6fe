"""The README's Python program ("Use the Centrifugo SDKs") run as a reader would run it: its shell
commands in order, in an empty folder, against a fresh wsguard; the program itself copied from the
README, importing nothing but the standard library, `centrifuge-python` and `cent`; and its output
as the README shows it."""

from __future__ import annotations

import ast
import contextlib
import os
import re
import subprocess
import sys
from pathlib import Path

import processes

README = processes.ROOT / "README.md"
REQUIREMENTS = Path(__file__).resolve().parent / "requirements.txt"
SECTION = "## Use the Centrifugo SDKs"
CARGO_RUN = re.compile(r"^cargo run --release (?:-q )?-- ")


def _section() -> str:
    text = README.read_text()
    start = text.index(SECTION)
    return text[start : text.index("\n## ", start + len(SECTION))]


def _blocks(section: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", section, re.S)


def _commands_and_output() -> tuple[list[str], list[str]]:
    """The shell block's commands, and the output its comment lines show."""
    (shell,) = [b for b in _blocks(_section(), "sh") if "notifications.py" in b]
    lines = [line.strip() for line in shell.splitlines() if line.strip()]
    commands = [line for line in lines if not line.startswith("#")]
    output = [line.removeprefix("# ") for line in lines if line.startswith("#")]
    return commands, output


def _program() -> str:
    (program,) = [b for b in _blocks(_section(), "python") if "notifications.py" in b]
    return program


def test_program_imports_only_the_standard_library_and_the_two_sdks() -> None:
    imported = set()
    for node in ast.walk(ast.parse(_program())):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    foreign = imported - set(sys.stdlib_module_names)
    assert foreign == {"centrifuge", "cent"}, imported


def test_pip_line_pins_the_versions_the_tests_run() -> None:
    commands, _ = _commands_and_output()
    (pip,) = [c for c in commands if c.startswith("pip install ")]
    pinned = set(REQUIREMENTS.read_text().split())
    for requirement in pip.removeprefix("pip install ").split():
        assert requirement in pinned, f"{requirement} is not what {REQUIREMENTS.name} pins"


def test_readme_program_runs_against_a_fresh_wsguard(tmp_path: Path) -> None:
    commands, expected = _commands_and_output()
    (tmp_path / "notifications.py").write_text(_program())
    env = {k: v for k, v in os.environ.items() if not k.startswith("WSGUARD_")}
    with contextlib.ExitStack() as stack:
        for command in commands:
            if command.startswith("pip install "):
                continue  # the virtualenv has them, at the versions the previous test checks
            if command == "python notifications.py":
                done = subprocess.run(
                    [sys.executable, "notifications.py"],
                    cwd=tmp_path,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=60,
                )
                assert done.returncode == 0, done.stderr
                _assert_output(done.stdout.splitlines(), expected)
                continue
            export = re.fullmatch(r"export (\w+)=\$\((.*)\)", command)
            argv_text = export.group(2) if export else command.removesuffix(" &")
            assert CARGO_RUN.match(argv_text), f"a README command the test cannot run: {command}"
            argv = [processes.BIN, *CARGO_RUN.sub("", argv_text).split()]
            if command.endswith(" &"):
                # The README's server, on a free port instead of 8000; the program is told where.
                log = tmp_path / "serve.log"
                proc = stack.enter_context(
                    processes.running(
                        [*argv, "--bind", "127.0.0.1:0"], log, env=dict(env), cwd=tmp_path
                    )
                )
                url = processes.first_line(proc, log, "wsguard listening on ")
                env["WSGUARD_URL"] = url
                continue
            done = subprocess.run(
                argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
            )
            assert done.returncode == 0, f"{command}: {done.stderr}"
            if export:
                env[export.group(1)] = done.stdout.strip()
        assert "WSGUARD_URL" in env, "the README's commands never started the server"


def _assert_output(lines: list[str], expected: list[str]) -> None:
    """Each line as the README shows it; `…` stands for what differs from run to run."""
    assert len(lines) == len(expected), lines
    for line, shown in zip(lines, expected, strict=True):
        pattern = ".+".join(re.escape(part) for part in shown.split("…"))
        assert re.fullmatch(pattern, line), f"{line!r} is not as the README shows: {shown!r}"
