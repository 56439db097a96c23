"""The native layer's promises: calls release the GIL, Ctrl-C interrupts
them, threads share one client, and a forked child can keep using it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import warnings

import pytest
from conftest import Server
from graph import record_chain

import pulse

# A server that accepts connections and never answers: every call to it
# blocks until something interrupts it.
SILENT_CALL = textwrap.dedent(
    """
    import socket, sys, threading, time
    import pulse

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    held = []
    def accept():
        while True:
            held.append(srv.accept())  # kept open, never answered
    threading.Thread(target=accept, daemon=True).start()

    spins = 0
    def spin():
        global spins
        while True:
            spins += 1
            time.sleep(0.001)
    threading.Thread(target=spin, daemon=True).start()

    print("calling", flush=True)
    start = time.monotonic()
    try:
        c = pulse.connect(f"http://127.0.0.1:{srv.getsockname()[1]}", api_key="pk_x")
        c.who_am_i()
    except KeyboardInterrupt:
        print(f"interrupted {time.monotonic() - start:.3f} {spins}", flush=True)
        sys.exit(0)
    print("returned without an interrupt", flush=True)
    sys.exit(1)
    """
)


def test_blocking_call_releases_the_gil_and_ctrl_c_interrupts_it() -> None:
    p = subprocess.Popen(
        [sys.executable, "-c", SILENT_CALL], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert p.stdout is not None
        assert p.stdout.readline().strip() == "calling"
        time.sleep(1.0)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        pytest.fail(f"Ctrl-C did not interrupt the blocked call\n{out}\n{err}")
    assert p.returncode == 0, f"{out}\n{err}"
    _, elapsed, spins = out.split()
    # Interrupted promptly after SIGINT (sent ~1 s in)...
    assert float(elapsed) < 3.0, out
    # ...and while the call was blocked, another Python thread kept running.
    assert int(spins) > 100, out


def test_threads_share_a_client(client: pulse.Client, uid: str) -> None:
    g = record_chain(client, uid)
    expected = str(client.trace(g.pred))
    results: list[str] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(5):
                results.append(str(client.trace(g.pred)))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert results == [expected] * 40


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_can_keep_using_the_client(client: pulse.Client, server: Server, uid: str) -> None:
    g = record_chain(client, uid)
    tenant = client.who_am_i()["tenant_id"]  # the parent's runtime and connection are live
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork with threads
        pid = os.fork()
    if pid == 0:  # the child: report through the exit status only
        status = 3
        try:
            same = client.who_am_i()["tenant_id"] == tenant
            fresh = pulse.connect(server.endpoint, api_key=server.tenant_key)
            status = 0 if same and fresh.get_lineage_node(g.mv)["id"] == g.mv else 1
        except BaseException:  # noqa: BLE001
            status = 2
        finally:
            os._exit(status)
    deadline = time.monotonic() + 30
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung calling the server")
        time.sleep(0.05)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, f"child status {status}"
    # The parent's client still works after the fork.
    assert client.who_am_i()["tenant_id"] == tenant
