"""The wheel as a user gets it: built, installed in a fresh venv, and booking from elsewhere.

Offline and quick: the build uses the setuptools installed here (no build isolation), and the
venv sees this interpreter's site-packages for the dependencies, so nothing is downloaded.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.served import citas_serving, clean_env, free_port, log_events, post_json, stop

ROOT = Path(__file__).resolve().parent.parent
# What the build reads. Built from a copy, so a stale build/ in the checkout cannot slip old
# files into the wheel, and the build leaves nothing behind in the checkout.
BUILD_INPUTS = ("pyproject.toml", "README.md", "citas")
BOOKING = {"id_empresa": 12, "usuario_id": 7, "duracion_cita_minutos": 30}


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path
    python: Path
    elsewhere: Path  # a working directory outside the checkout


def _run(*command: str | Path, cwd: Path, hint: str = "") -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"{command} failed{hint}:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    tmp = tmp_path_factory.mktemp("packaging")
    source = tmp / "source"
    source.mkdir()
    for name in BUILD_INPUTS:
        if (ROOT / name).is_dir():
            shutil.copytree(
                ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            shutil.copy2(ROOT / name, source / name)
    _run(
        sys.executable,
        *("-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q"),
        *("-w", tmp, "."),
        cwd=source,
        # Older setuptools need the `wheel` package too ("invalid command 'bdist_wheel'").
        hint=" (it needs setuptools>=70.1, from the test extra: pip install -e '.[test]')",
    )
    [wheel] = tmp.glob("citas-*.whl")
    venv = tmp / "venv"
    # No pip of its own: the system site's pip installs into the venv, seconds faster.
    _run(sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", venv, cwd=tmp)
    python = venv / "bin" / "python"
    _run(python, "-m", "pip", "install", "--no-deps", "--no-index", "-q", wheel, cwd=tmp)
    elsewhere = tmp / "elsewhere"
    elsewhere.mkdir()
    return Installed(wheel, venv, python, elsewhere)


def test_the_wheel_ships_the_prompts(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = set(wheel.namelist())
    assert {"citas/prompts/system.j2", "citas/prompts/clock.j2"} <= names
    assert "citas/sandbox/seed.json" in names


def test_the_venv_imports_the_installed_citas(installed: Installed) -> None:
    done = _run(
        installed.python,
        "-c",
        "import citas, citas.config as c; print(citas.__file__); print(c.DEFAULT_PROMPTS_DIR)",
        cwd=installed.elsewhere,
    )
    module, prompts = (Path(line) for line in done.stdout.splitlines())
    venv = installed.venv.resolve()
    assert module.resolve().is_relative_to(venv), module
    assert prompts.resolve().is_relative_to(venv), prompts
    assert (prompts / "system.j2").is_file()
    assert (installed.venv / "bin" / "citas").is_file()  # the console script


def test_the_installed_service_books_an_appointment(installed: Installed) -> None:
    port = free_port()
    log = installed.elsewhere / "serve.log"
    command = [str(installed.python), "-m", "citas", "serve", "--sandbox", "--port", str(port)]
    with citas_serving(command, port, cwd=installed.elsewhere, env=clean_env(), log=log) as server:
        url = f"http://127.0.0.1:{port}/api/chat"
        session = {"session_id": "51911222333", "context": {"config": BOOKING}}
        # A weekday, so the clinic is open whatever day the test runs.
        first = post_json(url, {"message": "Hola, quiero una cita el lunes a las 10am", **session})
        second = post_json(url, {"message": "Me llamo Ana Pérez, ana@example.com", **session})
        third = post_json(url, {"message": "Sí, confírmala", **session})
        assert stop(server, log) == 0, log.read_text()
    assert "10:00 está disponible" in first["reply"], first
    assert first["url"] is None
    # The customer confirms the summary before anything is booked (the default).
    assert "¿Confirmo la reserva?" in second["reply"] and second["url"] is None, second
    assert "error" not in third, third
    assert third["url"] and third["url"].startswith("https://"), third
    assert "demo_model_active" in log_events(log)
