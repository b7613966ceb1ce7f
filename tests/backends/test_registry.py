"""The registry names its backends as strings; backends/conformance.py names the same classes
typed, so that mypy checks each against its protocol. These keep the two in agreement, and
check that callers read what a backend can do from its row, never from its name."""

from __future__ import annotations

import importlib
import io

import pytest

from falconchat.backends import conformance, open_in_process
from falconchat.backends.registry import BACKENDS, BackendKind
from falconchat.batch import command
from falconchat.cli.app import run
from falconchat.config_models import ModelSpec
from falconchat.errors import ExitCode, UsageError
from in_process import environment


def loaded(kind: BackendKind):
    module, _, name = kind.factory.partition(":")
    return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_every_row_names_the_factory_that_mypy_checks(name):
    typed = conformance.RESOLVERS if BACKENDS[name].resolves else conformance.FACTORIES
    assert loaded(BACKENDS[name]) is typed[name]
    if BACKENDS[name].serves:
        assert conformance.IN_PROCESS[name] is conformance.FACTORIES[name]
    assert set(conformance.FACTORIES) | set(conformance.RESOLVERS) == set(BACKENDS)
    assert {n for n, kind in BACKENDS.items() if kind.serves} == set(conformance.IN_PROCESS)


def test_rows_that_decode_several_at_once_run_in_process():
    for name, kind in BACKENDS.items():
        assert (kind.sequences is None) == (not kind.in_process), name
        assert not kind.serves or kind.in_process, name


def test_a_new_in_process_backend_is_sized_by_its_row(monkeypatch):
    """A backend added to the registry alone gets batch's -j from its row, not from its name."""
    monkeypatch.setitem(BACKENDS, "newcomer", BackendKind(("falcon",), True, "x:Y", sequences=3))
    notes = io.StringIO()
    assert command.concurrency_for(ModelSpec(name="n", backend="newcomer"), 8, notes) == 3
    assert "-j 8 runs as -j 3" in notes.getvalue()
    assert command.concurrency_for(ModelSpec(name="n", backend="newcomer"), None, notes) == 3  # 4 per core, at most 3


def test_serve_refuses_a_backend_whose_row_does_not_serve():
    with pytest.raises(UsageError, match=r'backend = "local"\); \'t\' is a tgi model'):
        open_in_process(ModelSpec(name="t", backend="tgi", endpoint="http://127.0.0.1:9"))


def test_serve_names_the_model_it_cannot_run(tmp_path):
    env = environment(tmp_path)
    (tmp_path / "c.toml").write_text('[models.t]\nbackend = "tgi"\nendpoint = "http://127.0.0.1:9"\n')
    assert run(["serve", "--config", str(tmp_path / "c.toml"), "--model", "t"], env) == ExitCode.USAGE
    assert "'t' is a tgi model" in env.stderr.text()
