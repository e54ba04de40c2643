"""Profile an artifact on another machine over SSH (a Jetson on the desk, a Pi in a rack).

Per host: connect with asyncssh (keys, agent and ``~/.ssh/config`` as OpenSSH would; host keys
checked against ``known_hosts``: an unknown or changed key is refused), make a private temporary
folder, copy the artifact and the target there, record the device's conditions, run the same
profiler as locally (``python -m edgeprune.cli profile ... --json``) or, on a TensorRT target
without edgeprune, ``trtexec`` (build the engine from the ONNX file, then time it), record the
conditions again, bring the report back and remove the folder. Every remote command is built
from fixed words and ``shlex.quote``-d values; nothing the user typed reaches a shell unquoted.

Several hosts run in parallel, one report row each.
"""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from edgeprune.config import yaml_problem
from edgeprune.errors import EdgepruneError
from edgeprune.targets import Target

TIME_LIMIT_S = 600.0  # one host's profile, from upload to report

_HOST = re.compile(r"^(?:(?P<user>[^@\s]+)@)?(?P<host>\[[^\]]+\]|[^:@\s]+)(?::(?P<port>\d+))?$")


@dataclass(frozen=True)
class HostSpec:
    """One device: an SSH destination (``user@host:port`` or a ``~/.ssh/config`` alias) and the
    Python that has edgeprune there (``python3`` unless a hosts file says otherwise)."""

    host: str
    user: str | None = None
    port: int | None = None
    python: str = "python3"

    @classmethod
    def parse(cls, text: str, python: str = "python3") -> HostSpec:
        m = _HOST.match(text.strip())
        if not m:
            raise EdgepruneError(
                f"not a host: {text!r} (expected user@host[:port] or an ~/.ssh/config alias)"
            )
        port = int(m["port"]) if m["port"] else None
        return cls(m["host"].strip("[]"), m["user"], port, python)

    @property
    def label(self) -> str:
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port else ""
        return f"{user}{self.host}{port}"


def load_hosts_file(path: str | Path) -> list[HostSpec]:
    """Hosts from a file: one ``user@host[:port]`` per line, or YAML ``- {host: ..., python: ...}``."""
    path = Path(path)
    flag = "--hosts-file"
    if not path.is_file():
        raise EdgepruneError(f"{flag} {path}: no such file")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise EdgepruneError(
            f"{flag} {path}: not UTF-8 text (byte {e.start}); expected one host per line, or YAML"
        ) from None
    lines = [ln.split("#")[0].strip() for ln in text.splitlines()]
    if any(ln.startswith(("-", "{", "[")) for ln in lines):  # YAML: - {host: jetson1, python: ...}
        try:
            data = yaml.safe_load(text)
        except (yaml.YAMLError, RecursionError) as e:
            raise EdgepruneError(f"{flag} {path}: {yaml_problem(e)}") from None
        if not isinstance(data, list):
            raise EdgepruneError(f"{flag} {path}: expected a list of hosts (- {{host: name, python: path}})")
        hosts = []
        for i, d in enumerate(data, 1):
            if isinstance(d, str):
                d = {"host": d}
            if not isinstance(d, dict) or "host" not in d:
                raise EdgepruneError(
                    f"{flag} {path}: entry {i} has no 'host' (expected - {{host: name, python: path}})"
                )
            unknown = sorted(set(d) - {"host", "python"})
            if unknown:
                raise EdgepruneError(
                    f"{flag} {path}: entry {i}: unknown key {unknown[0]!r} (known: host, python)"
                )
            hosts.append(HostSpec.parse(str(d["host"]), str(d.get("python", "python3"))))
    else:
        hosts = [HostSpec.parse(ln) for ln in lines if ln]
    if not hosts:
        raise EdgepruneError(f"{flag} {path}: no hosts in it (one user@host[:port] per line)")
    return hosts


@dataclass
class RemoteResult:
    """What one host reported."""

    host: str
    ok: bool
    method: str = ""  # "edgeprune" or "trtexec"
    report: dict[str, Any] = field(default_factory=dict)  # the remote profile report (stats, environment)
    conditions: dict[str, Any] = field(default_factory=dict)  # {"before": {...}, "after": {...}}
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    remote_tmp: str | None = field(default=None, repr=False)  # a temporary folder on the host, until removed


# Fixed shell, no user input: the device's conditions as key=value lines. Jetson files are read
# only where they exist; everything is best effort (2>/dev/null).
CONDITIONS_SCRIPT = r"""
echo "cpu=$(grep -m1 -E '^(model name|Model|Hardware)' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//')"
echo "cores=$(nproc 2>/dev/null)"
echo "arch=$(uname -m)"
echo "kernel=$(uname -r)"
echo "governor=$(cat /sys/devices/system/cpu/cpu0/cpufreq/scaling_governor 2>/dev/null)"
echo "cpu_cur_khz=$(cat /sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq 2>/dev/null)"
echo "cpu_max_khz=$(cat /sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq 2>/dev/null)"
echo "cpu_min_khz=$(cat /sys/devices/system/cpu/cpu0/cpufreq/scaling_min_freq 2>/dev/null)"
echo "l4t=$(head -n1 /etc/nv_tegra_release 2>/dev/null)"
echo "jetpack=$(dpkg-query -W -f='${Version}' nvidia-jetpack 2>/dev/null)"
echo "nvpmodel=$(nvpmodel -q 2>/dev/null | tr '\n' ' ')"
for d in /sys/class/devfreq/*; do
  [ -r "$d/cur_freq" ] || continue
  n=$(basename "$d")
  echo "devfreq.$n.cur=$(cat "$d/cur_freq" 2>/dev/null)"
  echo "devfreq.$n.max=$(cat "$d/max_freq" 2>/dev/null)"
  echo "devfreq.$n.min=$(cat "$d/min_freq" 2>/dev/null)"
done
echo "emc_hz=$(cat /sys/kernel/debug/bpmp/debug/clk/emc/rate 2>/dev/null)"
for z in /sys/class/thermal/thermal_zone*; do
  [ -r "$z/temp" ] || continue
  echo "temp.$(cat "$z/type" 2>/dev/null)=$(cat "$z/temp" 2>/dev/null)"
done
"""


def parse_conditions(text: str) -> dict[str, Any]:
    """The key=value lines of ``CONDITIONS_SCRIPT`` as a dict (temperatures in degrees C)."""
    out: dict[str, Any] = {"temps_c": {}, "devfreq": {}}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if not sep or not value.strip():
            continue
        value = value.strip()
        if key.startswith("temp."):
            try:
                out["temps_c"][key[5:]] = round(int(value) / 1000, 1)
            except ValueError:
                pass
        elif key.startswith("devfreq."):
            name, _, what = key[len("devfreq.") :].rpartition(".")  # device names have dots in them
            out["devfreq"].setdefault(name, {})[what] = int(value) if value.isdigit() else value
        else:
            out[key] = int(value) if value.isdigit() else value
    mode = re.search(r"NV Power Mode:\s*(\S+)", str(out.get("nvpmodel", "")))
    if mode:
        out["power_mode"] = mode.group(1)
        mode_id = re.search(r"NV Power Mode:\s*\S+\s+(\d+)", str(out["nvpmodel"]))
        out["power_mode_id"] = int(mode_id.group(1)) if mode_id else None
    out["jetson"] = bool(out.get("l4t"))
    if out["jetson"]:  # jetson_clocks pins every clock's minimum to its maximum
        gpu = _gpu_devfreq(out["devfreq"])
        cpu_locked = out.get("cpu_min_khz") and out.get("cpu_min_khz") == out.get("cpu_max_khz")
        gpu_locked = gpu is not None and gpu.get("min") == gpu.get("max")
        out["jetson_clocks"] = bool(cpu_locked and gpu_locked)
        if gpu is not None:
            out["gpu_hz"] = gpu.get("cur")
    return out


def _gpu_devfreq(devfreq: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    for name, v in devfreq.items():
        if any(tag in name for tag in ("gpu", "ga10b", "gv11b", "gp10b", "gpu.0")):
            return v
    return None


def condition_warnings(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Why a number measured under these conditions may not be trusted."""
    warnings = []
    governor = after.get("governor") or before.get("governor")
    if governor and governor != "performance":
        warnings.append(f"CPU governor is {governor!r}, not 'performance': clocks may ramp during the run")
    hottest = max(after.get("temps_c", {}).values(), default=None)
    if hottest is not None and hottest >= 85:
        warnings.append(f"{hottest:.0f} C after the run: the device is likely thermal throttling")
    if (
        before.get("cpu_max_khz")
        and after.get("cpu_cur_khz")
        and after["cpu_cur_khz"] < 0.7 * before["cpu_max_khz"]
    ):
        warnings.append(
            f"CPU at {after['cpu_cur_khz'] / 1e3:.0f} MHz after the run, below 70% of its "
            f"{before['cpu_max_khz'] / 1e3:.0f} MHz maximum (throttling or power saving)"
        )
    if before.get("jetson"):
        if before.get("power_mode_id") not in (None, 0):
            warnings.append(
                f"nvpmodel power mode {before.get('power_mode')} (id {before['power_mode_id']}) is not the "
                "maximum (id 0): `sudo nvpmodel -m 0`"
            )
        if not before.get("jetson_clocks"):
            warnings.append("jetson_clocks is off: clocks scale with load; `sudo jetson_clocks` pins them")
    return warnings


def target_yaml(target: Target) -> str:
    """The target as a YAML file the remote edgeprune validates like any other."""
    return yaml.safe_dump(target.model_dump(mode="json"), sort_keys=False)


async def _profile_one(
    spec: HostSpec,
    artifact: Path,
    target: Target,
    *,
    ssh_config: str | Path | None,
    connect_timeout: float,
    time_limit_s: float = 0,
) -> RemoteResult:
    from edgeprune._optional import require

    asyncssh = require("asyncssh", "ssh", "profiling over SSH")
    result = RemoteResult(host=spec.label, ok=False)
    # keepalives: a host that stops answering mid-run is noticed within a minute
    options: dict[str, Any] = {
        "connect_timeout": connect_timeout,
        "keepalive_interval": 15,
        "keepalive_count_max": 4,
    }
    if spec.port:
        options["port"] = spec.port
    if spec.user:
        options["username"] = spec.user
    if ssh_config is not None:
        options["config"] = [str(ssh_config)]
    limit = time_limit_s or TIME_LIMIT_S
    try:
        async with asyncssh.connect(spec.host, **options) as conn:
            try:
                await asyncio.wait_for(_run_remote(conn, spec, artifact, target, result, limit), limit + 60)
            except (TimeoutError, asyncio.TimeoutError):
                result.error = (
                    f"{spec.label}: gave up after {limit:.0f} s (copies and profile); is the host or its "
                    "network stalled? (profile --timeout sets the limit)"
                )
    except (TimeoutError, asyncio.TimeoutError):
        result.error = (
            f"{spec.label}: no answer within {connect_timeout:.0f} s (host down, or a firewall drops packets)"
        )
    except asyncssh.HostKeyNotVerifiable as e:
        result.error = (
            f"{spec.label}: host key not verified ({e.reason}); edgeprune checks host keys against "
            "known_hosts: connect once with `ssh` to check and record the key, or fix a changed one"
        )
    except asyncssh.PermissionDenied:
        result.error = (
            f"{spec.label}: permission denied (no key accepted; check ssh-agent, IdentityFile, user)"
        )
    except asyncssh.ConnectionLost as e:
        result.error = f"{spec.label}: the connection dropped mid-run ({e.reason}); nothing was measured"
    except (OSError, asyncssh.Error) as e:
        result.error = f"{spec.label}: {type(e).__name__}: {getattr(e, 'reason', None) or e}"
    except EdgepruneError as e:
        result.error = f"{spec.label}: {e}"
    if result.remote_tmp:  # the run ended without removing its folder (connection lost, timed out)
        await _remove_later(asyncssh, spec.host, options, result)
    return result


async def _remove_later(asyncssh: Any, host: str, options: dict[str, Any], result: RemoteResult) -> None:
    """Connect once more to remove a temporary folder a broken run left; say so if that fails too."""
    try:
        async with asyncssh.connect(host, **options) as conn:
            await asyncio.wait_for(
                conn.run(shlex.join(["rm", "-rf", "--", result.remote_tmp]), check=False), 60
            )
        result.remote_tmp = None
    except (OSError, asyncssh.Error, TimeoutError, asyncio.TimeoutError):
        result.warnings.append(f"could not remove {result.remote_tmp} on the host: remove it by hand")


async def _run_remote(
    conn: Any, spec: HostSpec, artifact: Path, target: Target, result: RemoteResult, time_limit_s: float
) -> None:
    async def run(words: list[str] | str, check: bool = True) -> Any:
        cmd = words if isinstance(words, str) else shlex.join(words)
        r = await conn.run(cmd, check=False)
        if check and r.exit_status != 0:
            tail = (r.stderr or r.stdout or "").strip().splitlines()[-3:]
            raise EdgepruneError(f"`{cmd}` failed with exit {r.exit_status}: {' | '.join(tail)}")
        return r

    made = await run(["mktemp", "-d", "-t", "edgeprune.XXXXXXXX"], check=False)
    tmp = (made.stdout or "").strip()
    if made.exit_status != 0 or not tmp.startswith("/"):
        why = (made.stderr or "").strip().splitlines()[-1:] or [repr(tmp)]
        raise EdgepruneError(f"cannot make a temporary folder on the host (mktemp -d: {why[0]})")
    result.remote_tmp = tmp
    try:
        remote_target = f"{tmp}/target.yaml"
        remote_json = f"{tmp}/report.json"
        files = await _open_files(conn)
        if isinstance(files, _ExecFiles):
            result.warnings.append(
                "the host has no SFTP subsystem: files were copied over the SSH exec channel (cat)"
            )
        need = _size(artifact) + SPACE_HEADROOM
        free = await _free_bytes(run, tmp)
        if free is not None and free < need:
            raise EdgepruneError(_no_space(tmp, free, need))
        try:
            remote_artifact = await _upload(files, artifact, tmp)
            await files.write(remote_target, target_yaml(target).encode())
        except Exception as e:  # SFTP says only "Failure" when the disk fills up mid-copy
            free = await _free_bytes(run, tmp)
            if free is not None and free < need:
                raise EdgepruneError(_no_space(tmp, free, need)) from e
            raise
        before = parse_conditions((await run(CONDITIONS_SCRIPT, check=False)).stdout)
        has_edgeprune = (await run([spec.python, "-c", "import edgeprune"], check=False)).exit_status == 0
        if has_edgeprune:
            result.method = "edgeprune"
            has_timeout = (await run("command -v timeout", check=False)).exit_status == 0
            limit = ["timeout", "-k", "5", str(max(1, round(time_limit_s)))] if has_timeout else []
            started = time.monotonic()
            r = await run(
                [*limit, spec.python, "-m", "edgeprune.cli", "profile", remote_artifact, "--target", remote_target,
                 "--json", remote_json], check=False,
            )  # fmt: skip
            # 124: timeout stopped it; a kill or signal counts only once the limit has passed (else a crash)
            over = r.exit_status == 124 or (r.exit_status != 0 and time.monotonic() - started >= time_limit_s)
            if limit and over:
                raise EdgepruneError(
                    f"the remote profile exceeded its time limit of {time_limit_s:.0f} s and was stopped "
                    "(profile --timeout sets the limit)"
                )
            if r.exit_status not in (0, 3):  # 3 = over budget: a result, not a failure
                tail = (r.stderr or r.stdout or "").strip().splitlines()[-3:]
                raise EdgepruneError(f"the remote profiler failed (exit {r.exit_status}): {' | '.join(tail)}")
            result.report = json.loads((await files.read(remote_json)).decode())
        elif target.runtime == "tensorrt":
            result.method = "trtexec"
            result.report = await _trtexec(run, remote_artifact, tmp, target)
        else:
            raise EdgepruneError(
                f"edgeprune is not installed for {spec.python} on this host (and only TensorRT targets can "
                "fall back to trtexec): `pip install edgeprune` there, or name its Python in a hosts file"
            )
        after = parse_conditions((await run(CONDITIONS_SCRIPT, check=False)).stdout)
        result.conditions = {"before": before, "after": after}
        result.warnings += condition_warnings(before, after) + list(result.report.get("warnings") or [])
        result.ok = True
    finally:
        import asyncssh

        try:  # bounded: on a stalled link the cleanup itself would wait forever
            await asyncio.wait_for(run(["rm", "-rf", "--", tmp], check=False), 15)
            result.remote_tmp = None
        except (OSError, asyncssh.Error, TimeoutError, asyncio.TimeoutError):  # _remove_later connects again
            pass


class _SftpFiles:
    """Files on the host through one SFTP session, open until the connection closes."""

    def __init__(self, sftp: Any):
        self.sftp = sftp

    async def put(self, local: Path, remote: str) -> None:
        await self.sftp.put(str(local), remote, recurse=local.is_dir())

    async def write(self, remote: str, data: bytes) -> None:
        async with self.sftp.open(remote, "wb") as f:
            await f.write(data)

    async def read(self, remote: str) -> bytes:
        async with self.sftp.open(remote, "rb") as f:
            return await f.read()


class _ExecFiles:
    """Files on a host without SFTP (minimal images, dropbear): ``cat`` over the exec channel."""

    def __init__(self, conn: Any):
        self.conn = conn

    async def _run(self, cmd: str, data: bytes | None = None) -> bytes:
        r = await self.conn.run(cmd, input=data, encoding=None, check=False)
        if r.exit_status != 0:
            why = (r.stderr or b"").decode(errors="replace").strip().splitlines()[-1:] or [
                f"exit {r.exit_status}"
            ]
            raise EdgepruneError(f"copying over the exec channel failed: `{cmd}`: {why[0]}")
        return r.stdout or b""

    async def put(self, local: Path, remote: str) -> None:
        if local.is_dir():
            await self._run(f"mkdir -p -- {shlex.quote(remote)}")
            for child in sorted(local.iterdir()):
                await self.put(child, f"{remote}/{child.name}")
        else:
            await self.write(remote, local.read_bytes())

    async def write(self, remote: str, data: bytes) -> None:
        await self._run(f"cat > {shlex.quote(remote)}", data)

    async def read(self, remote: str) -> bytes:
        return await self._run(f"cat -- {shlex.quote(remote)}")


async def _open_files(conn: Any) -> _SftpFiles | _ExecFiles:
    """SFTP when the host offers it, else copies over the exec channel."""
    import asyncssh

    try:
        return _SftpFiles(await conn.start_sftp_client())
    except (asyncssh.ChannelOpenError, asyncssh.SFTPError):
        return _ExecFiles(conn)


SPACE_HEADROOM = 1 << 20  # the target file, the report and the profiler's own scratch files


def _copied(artifact: Path) -> Path:
    """What goes to the host: the artifact, or the whole OpenVINO IR folder it is in."""
    if not artifact.is_dir() and artifact.parent.name.endswith("_openvino_model"):
        return artifact.parent
    return artifact


def _size(artifact: Path) -> int:
    """Bytes to copy (``_copied``)."""
    source = _copied(artifact)
    if source.is_dir():
        return sum(p.stat().st_size for p in source.rglob("*") if p.is_file())
    return source.stat().st_size


async def _free_bytes(run: Any, folder: str) -> int | None:
    """Free bytes on the host's filesystem of ``folder`` (POSIX ``df -P``); None when unknown."""
    r = await run(["df", "-Pk", "--", folder], check=False)
    lines = (r.stdout or "").strip().splitlines()
    try:
        return int(lines[-1].split()[3]) * 1024 if r.exit_status == 0 and len(lines) >= 2 else None
    except (IndexError, ValueError):
        return None


def _no_space(folder: str, free: int, need: int) -> str:
    return (
        f"the host's disk is full: {folder} has {free / 1e6:.2f} MB free and the artifact needs "
        f"{need / 1e6:.2f} MB (with {SPACE_HEADROOM / 2**20:g} MB for the report); free space there, or "
        "point the host's TMPDIR at a larger filesystem"
    )


async def _upload(files: _SftpFiles | _ExecFiles, artifact: Path, tmp: str) -> str:
    """Copy the artifact (a file, or an OpenVINO IR folder) into ``tmp``; returns its remote path."""
    source = _copied(artifact)
    await files.put(source, f"{tmp}/{source.name}")
    return f"{tmp}/{source.name}" if source == artifact else f"{tmp}/{source.name}/{artifact.name}"


async def _trtexec(run: Any, remote_artifact: str, tmp: str, target: Target) -> dict[str, Any]:
    from edgeprune.profiling.budget import judge
    from edgeprune.profiling.trtexec import build_command, parse_report, time_command

    found = await run("command -v trtexec || ls /usr/src/tensorrt/bin/trtexec", check=False)
    exe = (found.stdout or "").strip().splitlines()[-1:] or [""]
    if found.exit_status != 0 or not exe[0]:
        raise EdgepruneError("neither edgeprune nor trtexec found on this host")
    engine = remote_artifact
    if remote_artifact.endswith(".onnx"):
        engine = f"{tmp}/model.engine"
        cmd = build_command(remote_artifact, engine, target.precision)
        await run([exe[0], *cmd[1:]])
    p = target.profiling
    cmd = time_command(
        engine, warmup_ms=max(200, round(p.warmup_s * 1000)), iterations=p.iterations, min_time_s=p.min_time_s
    )
    parsed = parse_report((await run([exe[0], *cmd[1:]])).stdout)
    stats = parsed["latency"]
    verdict = judge(stats, target.budget.latency_ms, target.budget.percentile)
    return {
        "result": {
            "latency_ms": stats.to_dict(),
            "gpu_compute_ms": parsed["gpu_compute"] and parsed["gpu_compute"].to_dict(),
        },
        "passed": verdict.passed,
        "verdict": verdict.to_dict(),
        "environment": {"runtime": "tensorrt (trtexec)", "throughput_qps": parsed["throughput_qps"]},
    }


def profile_hosts(
    hosts: list[HostSpec],
    artifact: str | Path,
    target: Target,
    *,
    ssh_config: str | Path | None = None,
    connect_timeout: float = 15.0,
    time_limit_s: float = TIME_LIMIT_S,
) -> list[RemoteResult]:
    """Profile ``artifact`` on every host in parallel; one result per host, in the given order.

    A host's profiler runs under ``timeout`` (killed after ``time_limit_s``), and the whole host,
    copies included, is given up ``time_limit_s`` + 60 s after it connected."""
    artifact = Path(artifact)
    if not artifact.exists():
        raise EdgepruneError(f"artifact not found: {artifact}")

    async def all_hosts() -> list[RemoteResult]:
        return list(
            await asyncio.gather(
                *(_profile_one(h, artifact, target, ssh_config=ssh_config, connect_timeout=connect_timeout,
                               time_limit_s=time_limit_s) for h in hosts)
            )
        )  # fmt: skip

    return asyncio.run(all_hosts())
