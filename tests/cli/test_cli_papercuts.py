"""Issue 18 §5, CLI papercuts: --version, completion, durations with units, read-only commands
that never create a store, whole keys accepted but never echoed, hints, help, progress, times."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from extapi_kit import __version__
from extapi_kit.audit import AuditRecord, audit_store_from_url
from extapi_kit.cli import build_parser, main
from extapi_kit.cli._progress import Progress
from extapi_kit.cli.completion import completion_script

PEPPER = "cli-papercuts-pepper-0123456789"


@pytest.fixture
def keys_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path}/keys.db"
    monkeypatch.setenv("EXTAPI_KIT_STORE", url)
    monkeypatch.setenv("EXTAPI_KIT_PEPPER", PEPPER)
    monkeypatch.delenv("EXTAPI_KIT_USAGE_STORE", raising=False)
    monkeypatch.delenv("EXTAPI_KIT_WEBHOOK_STORE", raising=False)
    return url


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def create(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    code, out, _ = run(capsys, "keys", "create", "--name", "k", "--hasher", "hmac", "--json")
    assert code == 0
    data: dict[str, Any] = json.loads(out)
    return data


def test_version_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 18 §5: `extapi-kit --version` prints the installed version and exits 0."""
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"extapi-kit {__version__}"


def _complete(script: str, *words: str) -> list[str]:
    """Run the generated script in a real bash and return what TAB offers after ``words``."""
    line = " ".join(f"'{w}'" for w in ["extapi-kit", *words])
    probe = (
        f"{script}\nCOMP_WORDS=({line}); COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))\n"
        '_extapi_kit; printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    out = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_bash_completion_completes_commands_options_and_choices(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Issue 18 §5: `completion bash` prints a script that, in bash, completes groups, actions,
    options and option choices from the real parser; `completion zsh` wraps it for zsh."""
    assert main(["completion", "bash"]) == 0
    script = capsys.readouterr().out
    assert script.rstrip().endswith("complete -F _extapi_kit extapi-kit")
    assert _complete(script, "k") == ["keys"]
    assert "revoke" in _complete(script, "keys", "") and "usage" in _complete(script, "keys", "")
    assert _complete(script, "keys", "create", "--exp") == ["--expires-in"]
    assert _complete(script, "keys", "create", "--hasher", "") == ["argon2", "hmac"]
    assert _complete(script, "webhooks", "rotate-secret", "--gr") == ["--grace"]
    assert _complete(script, "completion", "") == ["--help", "bash", "zsh"]
    zsh = completion_script(build_parser(), "zsh")
    assert zsh.startswith("#compdef extapi-kit\n") and "bashcompinit" in zsh


@pytest.mark.parametrize("argv", [["create", "--name", "x"], ["update", "ID"]])
def test_expires_in_needs_a_unit(
    keys_url: str, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    """Issue 18 §5: `--expires-in 30` (30 what?) is refused naming the option and the units;
    `30d` is accepted."""
    key = create(capsys)
    argv = [key["id"] if a == "ID" else a for a in argv]
    code, out, err = run(capsys, "keys", *argv, "--expires-in", "30", "--hasher", "hmac")
    assert code == 1 and out == ""
    assert "--expires-in" in err and "needs a unit" in err and "30d" in err
    code, out, _ = run(capsys, "keys", *argv, "--expires-in", "30d", "--hasher", "hmac", "--json")
    assert code == 0 and json.loads(out)["expires_at"]


@pytest.mark.parametrize(
    "argv",
    [
        ["keys", "list"],
        ["keys", "show", "0123456789abcdefghijkl"],
        ["keys", "usage", "0123456789abcdefghijkl", "--keys-store", "STORE"],
        ["usage", "show", "k1"],
        ["audit", "query"],
        ["audit", "prune", "--older-than", "30d"],
        ["webhooks", "list"],
        ["webhooks", "deliveries"],
        ["webhooks", "test", "ep_x"],
    ],
)
def test_read_only_commands_never_create_a_store(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
) -> None:
    """Issue 18 §5: a read-only command given a store that does not exist (a typo, or a
    directory that does not exist) says so, naming the path, exits 1 and creates nothing."""
    monkeypatch.chdir(tmp_path)
    url = "sqlite:///nonexistent/dir/store.db"
    argv = [url if a == "STORE" else a for a in argv]
    store = [] if "--keys-store" in argv else ["--store", url]
    code, out, err = run(capsys, *argv, *store)
    assert code == 1 and out == ""
    assert "does not exist" in err and str(tmp_path / "nonexistent/dir/store.db") in err
    assert os.listdir(tmp_path) == []


def test_revoke_accepts_a_whole_key_and_never_echoes_a_secret(
    keys_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 18 §5: `keys revoke/show <whole key>` act on the key's id; a mistyped key is
    refused without repeating it; no output ever contains the secret."""
    made = create(capsys)
    key, key_id = made["key"], made["id"]
    secret_part = key[len(f"xk_live_{key_id}_") :]
    code, out, err = run(capsys, "keys", "show", key, "--hasher", "hmac")
    assert code == 0 and key_id in out
    mistyped = key[:-1] + ("A" if key[-1] != "A" else "B")
    for bad in (mistyped, key[:-6]):
        code, out, err = run(capsys, "keys", "revoke", bad, "--hasher", "hmac")
        assert code == 1 and "not repeated" in err
        assert secret_part[:20] not in out + err
    code, out, err = run(capsys, "keys", "revoke", key, "--hasher", "hmac")
    assert code == 0 and out.strip() == f"revoked {key_id}"
    assert secret_part[:20] not in out + err
    code, out, _ = run(capsys, "keys", "show", key_id, "--json", "--hasher", "hmac")
    assert json.loads(out)["revoked_at"]


def test_keys_usage_of_an_unknown_id_exits_1(
    keys_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 18 §5: `keys usage <unknown id>` exits 1 like every other keys command; a known key
    with no usage shows zeros and creates no usage store."""
    key_id = create(capsys)["id"]
    code, out, err = run(capsys, "keys", "usage", "0123456789abcdefghijkl")
    assert code == 1 and out == "" and "no API key" in err
    code, out, _ = run(capsys, "keys", "usage", key_id, "--json", "--store", keys_url + "-usage")
    assert code == 0 and json.loads(out)["month"]["total"] == 0
    assert not Path(keys_url.removeprefix("sqlite:///") + "-usage").exists()


def test_loopback_refusals_say_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 18 §5: `webhooks add` of a loopback URL names --allow-loopback, and `webhooks test`
    of a loopback endpoint that fails with ssrf_blocked hints at it too."""
    store = ["--store", f"sqlite:///{tmp_path}/wh.db"]
    code, _, err = run(capsys, "webhooks", "add", "http://127.0.0.1:9/h", *store)
    assert code == 1 and "denied address" in err and "--allow-loopback" in err
    code, _, err = run(capsys, "webhooks", "add", "http://10.0.0.1/h", *store)
    assert code == 1 and "--allow-loopback" not in err  # no hint where it would not help
    code, out, _ = run(
        capsys, "webhooks", "add", "http://127.0.0.1:9/h", "--allow-loopback", "--json", *store
    )
    ep_id = json.loads(out)["id"]
    code, out, err = run(capsys, "webhooks", "test", ep_id, *store)
    assert code == 1 and "ssrf_blocked" in out and "--allow-loopback" in err


def test_keys_help_lists_lifecycle_first_and_describes_options(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Issue 18 §5: `keys --help` lists create first and usage last; --name and --hasher have
    help text."""
    with pytest.raises(SystemExit):
        main(["keys", "--help"])
    out = capsys.readouterr().out
    actions = [line.split()[0] for line in out.splitlines() if line.startswith("    ")]
    assert actions[0] == "create" and actions[-1] == "usage"
    with pytest.raises(SystemExit):
        main(["keys", "create", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--name NAME a label" in out and "--hasher {argon2,hmac} how new secrets" in out


def test_json_times_are_iso_8601_everywhere(
    keys_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 18 §5: webhook endpoints and deliveries print times in ISO 8601 UTC, like keys."""
    key_created = create(capsys)["created_at"]
    assert isinstance(key_created, str) and key_created.endswith("Z")
    store = ["--store", f"sqlite:///{tmp_path}/wh.db"]
    code, out, _ = run(capsys, "webhooks", "add", "https://example.com/h", "--json", *store)
    assert code == 0 and isinstance(json.loads(out)["created_at"], str)
    code, out, _ = run(capsys, "webhooks", "list", "--json", *store)
    created = json.loads(out)[0]["created_at"]
    assert isinstance(created, str) and created.endswith("Z") and "T" in created


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_draws_on_a_terminal_only() -> None:
    """Issue 18 §5: the progress line is drawn on a terminal, never on a pipe or with --json,
    redrawn in place, throttled, ended with a newline, its label escaped."""
    now = [0.0]
    tty = _Tty()
    with Progress("replaying \x1b[2J", total=4, stream=tty, clock=lambda: now[0]) as p:
        p.advance()  # throttled: within 0.1 s of the first line
        now[0] = 1.0
        p.advance()
    text = tty.getvalue()
    assert text.startswith("\rreplaying \\x1b[2J: 0/4") and "\x1b" not in text
    assert "2/4 (50%)" in text and "1/4" not in text and text.endswith("\n")
    for stream, quiet in ((io.StringIO(), False), (_Tty(), True)):
        with Progress("x", stream=stream, quiet=quiet) as p:
            p.advance(10)
        assert stream.getvalue() == ""


def test_audit_query_all_follows_every_page_with_progress_on_a_tty(tmp_path: Path) -> None:
    """Issue 18 §5: `audit query --all` returns every page; run under a real terminal (pty) it
    draws progress on stderr, and with --json (or piped) it prints none."""
    url = f"sqlite:///{tmp_path}/audit.db"

    async def seed() -> None:
        sink = audit_store_from_url(url)
        await sink.write_batch(
            [
                AuditRecord(
                    timestamp_us=int(time.time() * 1e6) - i,
                    request_id=f"req-{i}",
                    id=f"rec-{i}",
                    method="GET",
                    path=f"/r/{i}",
                    status=200,
                )
                for i in range(25)
            ]
        )
        await sink.aclose()

    asyncio.run(seed())
    import pty

    for extra, shown in (([], True), (["--json"], False)):
        master, slave = pty.openpty()
        try:
            argv = [sys.executable, "-m", "extapi_kit.cli", "audit", "query", "--all"]
            proc = subprocess.run(
                [*argv, "--limit", "10", "--store", url, *extra],
                stdout=subprocess.PIPE,
                stderr=slave,
                text=True,
                check=True,
            )
            os.close(slave)
            err = b""
            while True:
                try:
                    chunk = os.read(master, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                err += chunk
        finally:
            os.close(master)
        if extra:
            assert len(json.loads(proc.stdout)["records"]) == 25
        else:
            assert proc.stdout.count("/r/") == 25 and "--cursor" not in proc.stdout
        assert (b"reading audit records: 25" in err) is shown
