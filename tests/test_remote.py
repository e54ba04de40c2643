"""Profiling over SSH against a real OpenSSH server started on localhost with throwaway keys."""

from __future__ import annotations

import getpass
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgeprune.profiling.remote import HostSpec, condition_warnings, load_hosts_file, parse_conditions
from edgeprune.profiling.trtexec import build_command, parse_report, time_command

from conftest import run_cli  # noqa: E402

DATA = Path(__file__).parent / "data" / "trtexec"
SSHD = Path("/usr/sbin/sshd")


# --- pure parts ----------------------------------------------------------------------------------
def test_trtexec_reports_parse():
    new = parse_report((DATA / "trt_p90_format.txt").read_text())
    s = new["latency"]
    assert (s.p50, s.p90, s.p99, s.mean, s.min, s.max) == (
        30.7695,
        30.8008,
        31.5444,
        30.8066,
        30.7003,
        31.6415,
    )
    assert new["queries"] == 101 and new["throughput_qps"] == 32.7494
    old = parse_report((DATA / "trt82_format.txt").read_text())["latency"]
    assert old.p50 == 2.08276 and old.p99 == 2.58971 and old.p90 != old.p90  # no p90 printed: NaN
    with pytest.raises(Exception, match="no 'Latency: min"):
        parse_report("[I] Building engine...\n")


def test_trtexec_command_lines():
    assert build_command("m.onnx", "m.engine", "int8") == [
        "trtexec", "--onnx=m.onnx", "--saveEngine=m.engine", "--memPoolSize=workspace:2048M", "--fp16", "--int8",
        "--skipInference",
    ]  # fmt: skip
    assert time_command("m.engine", warmup_ms=500, iterations=300, min_time_s=3.0) == [
        "trtexec", "--loadEngine=m.engine", "--warmUp=500", "--iterations=300", "--duration=3", "--avgRuns=1"
    ]  # fmt: skip


def test_host_specs_and_hosts_file(tmp_path):
    assert HostSpec.parse("nvidia@orin.local:2222") == HostSpec("orin.local", "nvidia", 2222)
    assert HostSpec.parse("jetson1") == HostSpec("jetson1")
    assert HostSpec.parse("me@[::1]:22").host == "::1"
    with pytest.raises(Exception, match="not a host"):
        HostSpec.parse("a b")
    f = tmp_path / "hosts"
    f.write_text("# rack A\nnvidia@10.0.0.5\njetson2:2200\n")
    assert [h.label for h in load_hosts_file(f)] == ["nvidia@10.0.0.5", "jetson2:2200"]
    f.write_text("- {host: jetson1, python: /opt/ep/bin/python}\n- {host: pi@pi5}\n")
    assert [(h.host, h.python) for h in load_hosts_file(f)] == [
        ("jetson1", "/opt/ep/bin/python"),
        ("pi5", "python3"),
    ]


def test_jetson_conditions_and_warnings():
    text = "\n".join([
        "cpu=ARMv8 Processor rev 1 (v8l)", "cores=6", "governor=schedutil", "cpu_min_khz=729600",
        "cpu_max_khz=1510400", "cpu_cur_khz=729600", "l4t=# R36 (release), REVISION: 4.3",
        "nvpmodel=NV Power Mode: 15W 1 ", "devfreq.17000000.gpu.cur=306000000",
        "devfreq.17000000.gpu.max=1020000000", "devfreq.17000000.gpu.min=306000000",
        "temp.cpu-thermal=88500", "temp.gpu-thermal=61000",
    ])  # fmt: skip
    c = parse_conditions(text)
    assert c["jetson"] and c["power_mode"] == "15W" and c["power_mode_id"] == 1 and not c["jetson_clocks"]
    assert c["temps_c"] == {"cpu-thermal": 88.5, "gpu-thermal": 61.0} and c["gpu_hz"] == 306000000
    text_w = " | ".join(condition_warnings(c, c))
    for words in ("governor", "thermal throttling", "power mode", "jetson_clocks", "below 70%"):
        assert words in text_w
    calm = parse_conditions("governor=performance\ncpu_max_khz=100\ncpu_cur_khz=100\ntemp.x=40000")
    assert condition_warnings(calm, calm) == []


# --- a real OpenSSH server on localhost ---------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    yield from _sshd(tmp_path_factory.mktemp("sshd"), sftp=True)


@pytest.fixture(scope="module")
def sshd_no_sftp(tmp_path_factory):
    """A server without the SFTP subsystem, as on minimal images."""
    yield from _sshd(tmp_path_factory.mktemp("sshd-no-sftp"), sftp=False)


@pytest.fixture(scope="module")
def sshd_full_disk(tmp_path_factory):
    """A server whose sessions' TMPDIR is a 256 kB tmpfs: a host whose disk is (nearly) full."""
    d = tmp_path_factory.mktemp("sshd-full")
    tiny = d / "tiny"
    tiny.mkdir()
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(tiny)], capture_output=True
    )
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mount.stderr.decode().strip()[-200:]}")
    try:
        yield from _sshd(d, sftp=True, extra=f"SetEnv TMPDIR={tiny}\n")
    finally:
        subprocess.run(["umount", str(tiny)], check=False)


def _sshd(d: Path, sftp: bool, extra: str = ""):
    pytest.importorskip("asyncssh")
    if not SSHD.exists():
        pytest.skip("openssh-server is not installed (.ci/run installs it)")
    for name in ("host_key", "other_host_key", "id_ed25519"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / name)], check=True)
    (d / "authorized_keys").write_text((d / "id_ed25519.pub").read_text())
    os.chmod(d / "authorized_keys", 0o600)
    port = _free_port()
    (d / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host_key'}\nPidFile {d / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {d / 'authorized_keys'}\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nPubkeyAuthentication yes\nLogLevel ERROR\n"
        + ("Subsystem sftp internal-sftp\n" if sftp else "")
        + extra
    )
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(exist_ok=True)
    proc = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(d / "sshd_config")], stderr=subprocess.PIPE)
    for _ in range(50):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if proc.poll() is not None:
                pytest.skip(f"sshd did not start: {proc.stderr.read().decode()[-300:]}")
            time.sleep(0.1)
    host_pub = (d / "host_key.pub").read_text().split()
    other_pub = (d / "other_host_key.pub").read_text().split()
    (d / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
    (d / "wrong_known_hosts").write_text(f"[127.0.0.1]:{port} {other_pub[0]} {other_pub[1]}\n")
    user = getpass.getuser()
    common = f"  HostName 127.0.0.1\n  Port {port}\n  User {user}\n  IdentityFile {d / 'id_ed25519'}\n"
    (d / "ssh_config").write_text(
        f"Host box box2\n{common}  UserKnownHostsFile {d / 'known_hosts'}\n"
        f"Host box-changed-key\n{common}  UserKnownHostsFile {d / 'wrong_known_hosts'}\n"
    )
    yield {"dir": d, "port": port, "config": d / "ssh_config", "user": user}
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory):
    pytest.importorskip("ultralytics")
    from edgeprune.api import export

    out = tmp_path_factory.mktemp("art")
    return export("yolov8n.yaml", "cpu-ort-fp32", imgsz=64, out=out).artifact


def _target(tmp_path) -> Path:
    t = tmp_path / "t.yaml"
    t.write_text(
        "name: t\ndescription: ssh test\ndevice: {kind: x86-cpu, name: box}\nruntime: onnxruntime\n"
        "precision: fp32\nimgsz: 64\nthreads: 1\nround_to: 8\nbudget: {latency_ms: 1000, percentile: p50}\n"
        "profiling: {warmup: 5, warmup_s: 0, iterations: 60, min_time_s: 0.5}\n"
    )
    return t


def _hosts(tmp_path, *names: str) -> Path:
    f = tmp_path / "hosts.yaml"
    f.write_text("".join(f"- {{host: {n}, python: {sys.executable}}}\n" for n in names))
    return f


def _leftovers() -> set[str]:
    return {p.name for p in Path("/tmp").glob("edgeprune.*")}


def test_ssh_profile_equals_local_within_noise(sshd, onnx_model, tmp_path):
    target = _target(tmp_path)
    before = _leftovers()
    local = run_cli(
        "profile", str(onnx_model), "--target", str(target), "--json", str(tmp_path / "local.json")
    )
    assert local.returncode == 0, local.stderr
    r = run_cli(
        "profile", str(onnx_model), "--target", str(target), "--hosts-file", str(_hosts(tmp_path, "box")),
        "--ssh-config", str(sshd["config"]), "--json", str(tmp_path / "remote.json"),
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    report = json.loads((tmp_path / "remote.json").read_text())
    (host,) = report["hosts"]
    assert host["ok"] and host["method"] == "edgeprune" and report["passed"] is True
    remote_p50 = host["report"]["result"]["latency_ms"]["p50"]
    local_p50 = json.loads((tmp_path / "local.json").read_text())["result"]["latency_ms"]["p50"]
    assert 0.33 < remote_p50 / local_p50 < 3.0  # same machine, same profiler: equal within timing noise
    assert host["conditions"]["before"]["cores"] >= 1 and "cpu" in host["conditions"]["after"]
    assert host["report"]["environment"]["runtime"].startswith("onnxruntime")
    assert _leftovers() == before  # the remote temporary folder was removed


def test_several_hosts_in_parallel(sshd, onnx_model, tmp_path):
    address = f"{sshd['user']}@127.0.0.1:{sshd['port']}"
    hosts = _hosts(tmp_path, "box", "box2", address)
    t0 = time.perf_counter()
    r = run_cli(
        "profile", str(onnx_model), "--target", str(_target(tmp_path)), "--hosts-file", str(hosts),
        "--ssh-config", str(sshd["config"]), "--json", str(tmp_path / "r.json"),
    )  # fmt: skip
    report = json.loads((tmp_path / "r.json").read_text())
    assert [h["host"] for h in report["hosts"]] == ["box", "box2", address]  # one row per host, in order
    assert report["hosts"][0]["ok"] and report["hosts"][1]["ok"]
    # reached by address, the third host's key is checked against ~/.ssh/known_hosts, which does not
    # know this throwaway server: refused, while the others succeed
    assert not report["hosts"][2]["ok"] and "host key not verified" in report["hosts"][2]["error"]
    assert r.returncode == 1 and "box" in r.stdout and "box2" in r.stdout
    assert time.perf_counter() - t0 < 120


def test_changed_host_key_is_refused(sshd, onnx_model, tmp_path):
    r = run_cli(
        "profile", str(onnx_model), "--target", str(_target(tmp_path)), "--host", "box-changed-key",
        "--ssh-config", str(sshd["config"]),
    )  # fmt: skip
    assert r.returncode == 1 and "box-changed-key: host key not verified" in r.stderr
    assert "Traceback" not in r.stderr


def test_failing_remote_commands_are_reported(sshd, onnx_model, tmp_path):
    config = str(sshd["config"])
    hosts = tmp_path / "h.yaml"
    hosts.write_text("- {host: box, python: /nonexistent/python3}\n")
    r = run_cli(
        "profile",
        str(onnx_model),
        "-t",
        str(_target(tmp_path)),
        "--hosts-file",
        str(hosts),
        "--ssh-config",
        config,
    )
    assert r.returncode == 1 and "edgeprune is not installed for /nonexistent/python3" in r.stderr
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    r = run_cli(
        "profile", str(broken), "-t", str(_target(tmp_path)), "--hosts-file", str(_hosts(tmp_path, "box")),
        "--ssh-config", config,
    )  # fmt: skip
    assert r.returncode == 1 and "the remote profiler failed (exit 1)" in r.stderr


def test_budget_search_measures_on_the_host(sshd, onnx_model, tmp_path):
    local = run_cli(
        "profile", str(onnx_model), "--target", str(_target(tmp_path)), "--json", str(tmp_path / "l.json")
    )
    assert json.loads((tmp_path / "l.json").read_text())["result"]["latency_ms"]["p50"] > 0
    out = tmp_path / "out"
    # a speed-up, not a budget from the local timing: the host times the baseline beside every candidate,
    # so a busy moment here cannot make the unpruned model meet the budget there (no step, no probe)
    r = run_cli(
        "prune", "yolov8n.yaml", "-t", str(_target(tmp_path)), "--speedup", "1.5",
        "--steps", "1", "--host", "box", "--host-python", sys.executable, "--ssh-config", str(sshd["config"]),
        "--out", str(out), timeout=900,
    )  # fmt: skip
    assert r.returncode in (0, 3), r.stdout[-1500:] + r.stderr[-1500:]
    report = json.loads((out / "prune.json").read_text())
    assert report["search"]["probes"] and report["search"]["reference_ms"] > 0
    assert report["result"]["params"] < report["baseline"]["params"]
    assert local.returncode == 0


# --- devices that misbehave ---------------------------------------------------------------------------


def test_a_host_without_sftp_is_profiled_over_the_exec_channel(sshd_no_sftp, onnx_model, tmp_path):
    before = _leftovers()
    r = run_cli(
        "profile", str(onnx_model), "--target", str(_target(tmp_path)), "--hosts-file", str(_hosts(tmp_path, "box")),
        "--ssh-config", str(sshd_no_sftp["config"]), "--json", str(tmp_path / "r.json"),
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    (host,) = report["hosts"]
    assert host["ok"] and any("no SFTP subsystem" in w for w in host["warnings"])
    assert report["result"]["latency_ms"]["p50"] == host["report"]["result"]["latency_ms"]["p50"]
    assert report["result"]["host"] == "box" and report["verdict"]["passed"] is True
    assert _leftovers() == before


def test_a_host_that_refuses_is_a_clear_error_at_once(tmp_path, onnx_model):
    pytest.importorskip("asyncssh")
    t0 = time.perf_counter()
    r = run_cli(
        "profile", str(onnx_model), "-t", str(_target(tmp_path)), "--host", f"me@127.0.0.1:{_free_port()}"
    )
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "me@127.0.0.1" in r.stderr and "refused" in r.stderr.lower(), r.stderr
    assert time.perf_counter() - t0 < 60


def _fake_python(tmp_path: Path, body: str) -> Path:
    """A "Python" on the host that imports edgeprune but whose profile run does ``body``."""
    script = tmp_path / "python"
    script.write_text(f'#!/bin/sh\nif [ "$1" = "-c" ]; then exit 0; fi\n{body}\n')
    script.chmod(0o755)
    return script


def test_a_profile_over_its_time_limit_is_stopped_and_cleaned_up(sshd, onnx_model, tmp_path):
    python = _fake_python(tmp_path, "sleep 60")
    hosts = tmp_path / "h.yaml"
    hosts.write_text(f"- {{host: box, python: {python}}}\n")
    before = _leftovers()
    t0 = time.perf_counter()
    r = run_cli(
        "profile", str(onnx_model), "-t", str(_target(tmp_path)), "--hosts-file", str(hosts),
        "--ssh-config", str(sshd["config"]), "--timeout", "2",
    )  # fmt: skip
    assert r.returncode == 1 and "exceeded its time limit of 2 s" in r.stderr, r.stderr
    assert time.perf_counter() - t0 < 40
    assert _leftovers() == before


def test_a_connection_dropped_mid_run_is_reported_and_its_folder_removed(sshd, onnx_model, tmp_path):
    # the profiler kills the SSH session serving it: the connection drops while the host is working
    python = _fake_python(tmp_path, "kill -9 $PPID; sleep 5")
    hosts = tmp_path / "h.yaml"
    hosts.write_text(f"- {{host: box, python: {python}}}\n")
    before = _leftovers()
    r = run_cli(
        "profile", str(onnx_model), "-t", str(_target(tmp_path)), "--hosts-file", str(hosts),
        "--ssh-config", str(sshd["config"]), "--timeout", "30",
    )  # fmt: skip
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "box:" in r.stderr, r.stderr
    assert _leftovers() == before


def test_a_host_whose_disk_is_full_is_a_clear_error_and_leaves_nothing(sshd_full_disk, onnx_model, tmp_path):
    tiny = sshd_full_disk["dir"] / "tiny"
    r = run_cli(
        "profile", str(onnx_model), "-t", str(_target(tmp_path)), "--hosts-file", str(_hosts(tmp_path, "box")),
        "--ssh-config", str(sshd_full_disk["config"]),
    )  # fmt: skip
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert "box: the host's disk is full:" in r.stderr and "MB free and the artifact needs" in r.stderr, (
        r.stderr
    )
    assert list(tiny.iterdir()) == []  # the temporary folder was removed
