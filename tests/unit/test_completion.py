"""Shell completion (click's protocol, as the shell scripts from `*_source` drive it)."""

from __future__ import annotations

import pytest

from kindfix.cli import Context, main
from tests.fakes import FakeRuntime, container


def complete(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], shell: str,
             words: str, runtime: FakeRuntime) -> list[str]:
    """What the shell would be offered for the last word of `words` (a trailing space: a new
    word)."""
    monkeypatch.setenv("_KINDFIX_COMPLETE", f"{shell}_complete")
    monkeypatch.setenv("COMP_WORDS", words)
    partial = "" if words.endswith(" ") else words.rsplit(maxsplit=1)[-1]
    # bash and zsh pass the index of the word being completed; fish passes the word itself
    monkeypatch.setenv("COMP_CWORD", partial if shell == "fish" else
                       str(len(words.split()) - (0 if words.endswith(" ") else 1)))
    with pytest.raises(SystemExit) as done:
        main([], obj=Context(lambda: runtime))
    assert done.value.code == 0
    out = capsys.readouterr().out
    if shell == "bash":  # "type,value" lines
        return [line.split(",", 1)[1] for line in out.splitlines() if line]
    lines = out.splitlines()  # zsh and fish: type, value, help; three lines each
    return [lines[i + 1] for i in range(0, len(lines), 3)]


def clusters(*names: str) -> FakeRuntime:
    rt = FakeRuntime()
    for i, name in enumerate(names):
        rt.add(container(f"{name}-control-plane", "control-plane", f"172.18.0.{i + 2}",
                         cluster=name))
    return rt


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_subcommands_complete(shell: str, monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str]) -> None:
    offered = complete(monkeypatch, capsys, shell, "kindfix re", clusters())
    assert set(offered) == {"repair", "restore"}
    offered = complete(monkeypatch, capsys, shell, "kindfix rep", clusters())
    assert set(offered) == {"repair"}
    offered = complete(monkeypatch, capsys, shell, "kindfix ", clusters())
    assert {"audit", "repair", "clusters", "nodes", "pin", "collect"} <= set(offered)


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_name_completes_the_clusters_that_exist(shell: str, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    rt = clusters("kind", "dev", "demo")
    assert complete(monkeypatch, capsys, shell, "kindfix audit --name ", rt) == [
        "demo", "dev", "kind"]
    assert complete(monkeypatch, capsys, shell, "kindfix repair -n de", rt) == ["demo", "dev"]


def test_an_engine_that_does_not_answer_completes_nothing(monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    class Broken(FakeRuntime):
        def list_containers(self, labels):  # type: ignore[no-untyped-def]
            raise ConnectionError("engine gone")

    assert complete(monkeypatch, capsys, "bash", "kindfix audit --name ", Broken()) == []
    assert complete(monkeypatch, capsys, "bash", "kindfix audit --name ",
                    FakeRuntime(up=False)) == []


def test_source_scripts_exist_for_each_shell(monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    for shell, marker in (("bash", "complete -o nosort -F"), ("zsh", "compdef"),
                          ("fish", "complete --no-files --command kindfix")):
        monkeypatch.setenv("_KINDFIX_COMPLETE", f"{shell}_source")
        with pytest.raises(SystemExit):
            main([], obj=Context(FakeRuntime))
        assert marker in capsys.readouterr().out


def test_node_completes_the_nodes_of_the_named_cluster(monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    rt = clusters("kind", "dev")
    rt.add(container("dev-worker", "worker", "172.18.0.9", cluster="dev"))
    assert complete(monkeypatch, capsys, "bash", "kindfix repair --name dev --node ", rt) == [
        "dev-control-plane", "dev-worker"]
    assert complete(monkeypatch, capsys, "bash", "kindfix repair --node ki", rt) == [
        "kind-control-plane"]
