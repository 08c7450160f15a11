"""Every notebook in notebooks/ runs top to bottom on a fresh kernel, as a reader's would.

nbclient executes each one in the notebook's folder with the `python3` kernel of this
interpreter. Cells tagged `skip-execution` (those needing a browser: notebook 05's BrowserPeer
and camera) are skipped; tests/browser/test_browser_camera.py runs those in JupyterLab. Notebook
03 starts coturn's `turnserver` when it is installed (CI installs it). `PEERIX_NATS_URL` is removed
from the kernel's environment, so notebook 03 starts (and stops) its own NATS server; one test
runs 03 again against a server given in that variable, as `make lab` and Binder do.

The notebooks are committed without outputs (their numbers and ids change on every run); a
test checks that.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
#: One cell may take this long (a kernel start, the lossy-driver experiment of 04).
CELL_TIMEOUT = 60
#: A whole notebook (kernel start included) on 2 shared cores; they take 5-20 s here.
NOTEBOOK_TIMEOUT = 150
SKIP_TAG = "skip-execution"


def execute(name: str, env: dict[str, str] | None = None) -> tuple[Any, float]:
    """Run notebook `name` on a fresh kernel; returns the executed notebook and its duration."""
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    kernel_env = {k: v for k, v in os.environ.items() if not k.startswith("PEERIX_NATS")}
    kernel_env.update(env or {})
    kernel_env["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    client = nbclient.NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS)}},
        skip_cells_with_tag=SKIP_TAG,
    )
    start = time.monotonic()
    client.execute(env=kernel_env)
    return notebook, time.monotonic() - start


def text(cell: Any) -> str:
    """What a code cell printed or showed as text."""
    parts = []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            parts.append(output.get("text", ""))
        elif "text/plain" in output.get("data", {}):
            parts.append(output["data"]["text/plain"])
    return "".join(parts)


def all_text(notebook: Any) -> str:
    return "\n".join(text(cell) for cell in notebook.cells if cell.cell_type == "code")


def images(notebook: Any) -> int:
    """How many images (plots) the notebook drew."""
    return sum(
        "image/png" in output.get("data", {})
        for cell in notebook.cells
        for output in cell.get("outputs", [])
    )


def test_every_notebook_is_listed() -> None:
    assert NAMES == [
        "01-quickstart.ipynb",
        "02-media.ipynb",
        "03-across-notebooks.ipynb",
        "04-where-the-time-goes.ipynb",
        "05-browser-camera.ipynb",
        "06-bad-networks.ipynb",
        "07-inside-one-connection.ipynb",
        "08-mesh-vs-sfu.ipynb",
    ]


@pytest.mark.parametrize("name", NAMES)
def test_committed_without_outputs(name: str) -> None:
    notebook = json.loads((NOTEBOOKS / name).read_text())
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, (
                f"{name}: strip outputs before committing (cell {cell['id']})"
            )
    assert notebook["metadata"]["kernelspec"]["name"] == "python3"


@pytest.mark.timeout(NOTEBOOK_TIMEOUT)
@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_top_to_bottom(name: str) -> None:
    notebook, seconds = execute(name)
    print(f"{name}: {seconds:.1f} s")
    output = all_text(notebook)
    # nbclient raises on the first error; these check that each notebook did its job.
    if name == "01-quickstart.ipynb":
        assert "ada: connection:connected" in output
        assert "ada got 'hi ada, bob here' from bob on 'chat'" in output
        assert "signal:send" in output  # the event DataFrame
        assert "loopback addresses among them: none" in output  # aioice skips 127.0.0.1, ::1
        assert "its local side is one of ada's candidates: True" in output  # the selected pair
        assert images(notebook) == 1  # the protocol stack
        assert "bob is polite: True" in output  # exercise 2: a channel costs no offer
    elif name == "02-media.ipynb":
        assert "bob: stream:add 'camera' from ada" in output
        assert "bob: stream:remove 'camera' from ada" in output
        assert images(notebook) == 2  # brightness over time, the tone's waveform and spectrum
        # Sound: 2 s of every 20 ms frame of the remote tone, its level, spectrum and stamps
        assert "bob recorded 96000 samples (2.0 s)" in output
        level = float(re.search(r"level (-?[\d.]+) dBFS", output)[1])
        assert -23 < level < -17  # 0.2 of full scale (-17 dBFS), -3 dB in the stereo upmix
        peak = float(re.search(r"peak of the spectrum: (\d+) Hz", output)[1])
        assert 430 <= peak <= 450
        stamps = re.search(r"audio stamps: (\d+), .* median (\d+) ms", output)
        assert int(stamps[1]) >= 3 and 0 < int(stamps[2]) < 1000  # 2 per second, found after Opus
        assert output.count("as in the first m-line: True") == 3  # one bundled flow
        assert "republished: [('m=application', '-'), ('m=video', 'sendonly')" in output
    elif name == "03-across-notebooks.ipynb":
        assert "terminal says 'terminal got: hello from the notebook'" in output
        assert "terminal: left" in output  # the second process left on "bye"
        assert "pc1 is connected and knows pc2 as:\n  prflx " in output  # learned from a check
        assert "signaling rows since:" in output and "via the driver: 0" in output  # exercise 3
        if shutil.which("turnserver") is None:  # CI installs coturn: these run there
            assert "coturn's turnserver is not installed" in output
        else:
            assert "TURN server: turn:127.0.0.1:" in output
            assert "[host -> host]" in output and "[relay -> relay]" in output  # pairs in use
            assert "caller: relay 127.0.0.1:" in output  # exercise 1: relay on one side
            assert "error: PEER_ICECANDIDATE_ERROR: no relay candidate" in output  # exercise 2
            assert "connection:failed" in output
    elif name == "04-where-the-time-goes.ipynb":
        assert "30 attempts" in output  # six peers
        assert "connected after" in output  # the lossy driver
        assert images(notebook) == 6  # timelines, sequences, mesh growth, stats
        assert "handlers ran on 1 thread(s); the event loop's: True" in output
        assert "CPU ratio 8 vs 4 peers" in output  # exercise 2
    elif name == "05-browser-camera.ipynb":
        # BrowserPeer (7 cells, 2 of them exercises) and ipywebrtc (2): the browser test runs them
        skipped = [c for c in notebook.cells if SKIP_TAG in c.metadata.get("tags", [])]
        assert len(skipped) == 9 and all(not c.get("outputs") for c in skipped)
        assert "publishing the synthetic stream" in output
        assert "bob received 10 frames of (480, 640, 3), 10 stamped" in output
        assert "bob receives frames of (240, 320, 3)" in output  # exercise 3
    elif name == "06-bad-networks.ipynb":
        assert "loss 10%, delay 100 ms" in output  # video under loss
        assert "queue drops:" in output and images(notebook) == 1  # the stepping cap
        assert "300 of 300" in output  # the reliable channel under loss
        assert "delay 50 ms, loss 10 %" in output  # setup on a bad path
        assert "extra time 100 ms / 50 ms:" in output  # exercise 1
        assert "ordered  : 200 of 200" in output and "unordered: 200 of 200" in output
    elif name == "07-inside-one-connection.ipynb":
        assert "InvalidStateError" in output  # an answer set in 'stable'
        assert "as in the data-only offer: True" in output  # renegotiation keeps ICE and DTLS
        # Both publish at once: the collision is certain (see the notebook), so is its cure.
        assert "bob rolled back its own offer to answer ada's" in output
        assert "ada ignored bob's offer and kept its own" in output
        assert images(notebook) == 1  # the glare on the sequence diagram
        assert "callee: failed" in output and "fingerprint mismatch" in output
        assert "bob got: my PIN is 4711 - mallory read: ['my PIN is 4711']" in output
        assert "key unset: bob connection:failed" in output
        assert "key set: bob connection:connected" in output
        assert "offers made by the republish: 0" in output
        assert "cannot decrypt message" in output
    elif name == "08-mesh-vs-sfu.ipynb":
        assert "encoding all three sizes costs" in output  # the measured simulcast layers
        assert images(notebook) == 1  # upload and CPU: mesh measured, mesh / SFU modelled
        assert "each remote beyond the first adds" in output
        # Six peers: one sender per remote, one shared encoder per camera.
        assert "video senders per peer: [5], encoders per peer: [1]" in output
        assert "a 2 Mbit/s uplink is full beyond N =" in output
    assert seconds < NOTEBOOK_TIMEOUT


@pytest.mark.timeout(NOTEBOOK_TIMEOUT)
def test_across_notebooks_reuses_the_server_in_peerix_nats_url(nats_server: Any) -> None:
    """With PEERIX_NATS_URL set (make lab, Binder), notebook 03 starts no server of its own."""
    notebook, _ = execute(
        "03-across-notebooks.ipynb",
        {"PEERIX_NATS_URL": nats_server.url, "PEERIX_NATS_WS_URL": nats_server.websocket_url},
    )
    output = all_text(notebook)
    assert f"NATS: {nats_server.url}" in output
    assert "terminal got: hello from the notebook" in output
    assert nats_server.running  # the notebook did not stop a server it did not start


def test_second_peer_script_help() -> None:
    import subprocess

    result = subprocess.run(
        [sys.executable, str(NOTEBOOKS / "second_peer.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert "--url" in result.stdout and "--room" in result.stdout
