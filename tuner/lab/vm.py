"""A VM with Debian's stock kernel: kernel WireGuard, real IRQs and an initial network
namespace that belong to the test (virtme-ng under QEMU, software emulation).

``Vm.run(argv)`` boots the kernel with this machine's filesystem shared read-only,
runs one command as root inside and returns its exit code, stdout and stderr. virtme-ng's
script channel is not found with Debian's kernel (its console fallback loses the exit
code), so the command runs from a runner script that writes its results into a shared
read-write directory, which is where they are read back from.

Python over 9p is slow to start (every import is many file lookups through emulated
virtio): the runner copies one zip of the standard library, the dependencies and this
package (``python_bundle``) into the guest's tmpfs and runs Python from it — about 7 s
to import the CLI instead of 80.

With ``systemd=True`` the guest's PID 1 is this machine's systemd (see ``Vm._systemd_command``)
and the command runs as a unit of it, so what needs a real service manager (Type=notify,
watchdogs, transient timers, ``systemctl``) meets one.

The kernel is installed by scripts/install-vm-kernel.sh from the Debian archive:
``/var/cache/wg-tuner/vm/vmlinuz-VERSION`` and its modules in ``/lib/modules/VERSION``.
"""

from __future__ import annotations

import hashlib
import json
import os
import py_compile
import secrets
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tuner.errors import LabError
from tuner.lab.commands import run

KERNEL_DIR = Path(os.environ.get("WG_TUNER_VM_KERNEL_DIR", "/var/cache/wg-tuner/vm"))
BUNDLE_PACKAGES = ("pyroute2", "structlog", "yaml", "tenacity", "prometheus_client")
SKIP_STDLIB = frozenset(
    {
        "test",
        "idlelib",
        "tkinter",
        "turtledemo",
        "ensurepip",
        "lib2to3",
        "pydoc_data",
        "distutils",
        "site-packages",
        "__pycache__",
    }
)
GUEST_BUNDLE = "/run/wg-tuner-bundle.zip"


def find_kernel() -> Path:
    """The newest installed VM kernel; LabError naming the install script otherwise."""
    found = sorted(KERNEL_DIR.glob("vmlinuz-*"))
    if not found:
        raise LabError(
            f"no VM kernel in {KERNEL_DIR}: run scripts/install-vm-kernel.sh (make test does)"
        )
    kernel = found[-1]
    version = kernel.name.removeprefix("vmlinuz-")
    if not (Path("/lib/modules") / version / "modules.dep").exists():
        raise LabError(f"modules of {version} missing in /lib/modules: run install-vm-kernel.sh")
    return kernel


def _require(tool: str) -> str:
    path = shutil.which(tool) or shutil.which(tool, path=str(Path(sys.executable).parent))
    if path is None:
        raise LabError(f"{tool} not found (qemu-system-x86, busybox-static, virtme-ng)")
    return path


def _sources(roots: Sequence[tuple[Path, str]]) -> list[tuple[Path, str]]:
    """(file, name inside the zip) for every .py under each (base, package)."""
    out = []
    for base, package in roots:
        top = base / package
        if top.is_file():
            out.append((top, package))
            continue
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames[:] = sorted(d for d in dirnames if d not in SKIP_STDLIB)
            rel = Path(dirpath).relative_to(base)
            out += [
                (Path(dirpath) / f, str(rel / f)) for f in sorted(filenames) if f.endswith(".py")
            ]
    return out


def python_bundle(cache: Path, extra: Sequence[tuple[Path, str]] = ()) -> Path:
    """A zip of compiled modules (stdlib, dependencies, tuner, ``extra`` packages), cached
    by the sources' names, sizes and mtimes."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    site = Path(sysconfig.get_paths()["purelib"])
    here = Path(__file__).resolve().parents[2]
    roots = [(stdlib, n) for n in sorted(os.listdir(stdlib)) if n not in SKIP_STDLIB]
    roots = [(b, n) for b, n in roots if n.endswith(".py") or (b / n).is_dir()]
    roots += [(site, p) for p in BUNDLE_PACKAGES] + [(here, "tuner"), *extra]
    files = _sources(roots)
    digest = hashlib.sha256()
    for path, name in files:
        info = path.stat()
        digest.update(f"{name}:{info.st_size}:{info.st_mtime_ns}\n".encode())
    bundle = cache / f"bundle-{digest.hexdigest()[:16]}.zip"
    if bundle.exists():
        return bundle
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        pyc = Path(tmp) / "m.pyc"
        part = bundle.with_suffix(".part")
        with zipfile.ZipFile(part, "w", zipfile.ZIP_STORED) as z:
            for path, name in files:
                try:
                    py_compile.compile(str(path), cfile=str(pyc), dfile=name, doraise=True)
                except py_compile.PyCompileError:
                    continue  # a stdlib file for another platform
                z.write(pyc, name[:-3] + ".pyc")
        part.rename(bundle)
    return bundle


def load_factor(cpus: int, sample: float = 1.0) -> float:
    """How much slower than on an idle machine a VM of ``cpus`` vCPUs will run here now:
    the cores it needs over the cores idle during ``sample`` seconds (/proc/stat), at
    least 1 and at most 4. A software-emulated vCPU keeps a host core busy."""

    def idle_and_total() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return fields[3] + fields[4], sum(fields)

    try:
        idle0, total0 = idle_and_total()
        time.sleep(sample)
        idle1, total1 = idle_and_total()
    except (OSError, ValueError, IndexError):
        return 1.0
    cores = os.cpu_count() or 1
    idle_cores = cores * (idle1 - idle0) / max(1, total1 - total0)
    return min(4.0, max(1.0, min(cpus, cores) / max(idle_cores, 0.25)))


@dataclass(frozen=True, slots=True)
class VmResult:
    rc: int
    stdout: str
    stderr: str
    seconds: float
    console: str


CACHED_ROOT = (
    "-fsdev",
    "local,id=wgtroot,path=/,security_model=none,readonly=on,multidevs=remap",
    "-device",
    "virtio-9p-pci,fsdev=wgtroot,mount_tag=wgtroot",
)
"""The root once more, on a 9p channel of its own (one mount per channel): the systemd
VM's init mounts it read-only with the page and dentry caches on. virtme mounts the
root with none, so each of Python's many stats and reads crossed 9p under emulation:
an Ansible task took 24 s instead of 14. (The virtme-init VMs mostly wait on timers
and floods, and ran no faster with it.)"""

TAP = "wgtvmtap"
TAP_HOST, TAP_GUEST = "192.0.2.1", "192.0.2.2"
"""The NIC's two ends (TEST-NET-1, inside the run's namespace and the VM only)."""


@dataclass
class Vm:
    """One kind of VM; each ``run`` boots it afresh (nothing survives between runs)."""

    cpus: int = 2
    memory: str = "1G"
    queues: int = 2
    """A multi-queue virtio-net NIC (0: none): real per-queue MSI-X IRQs. Its host end is
    a tap device in a network namespace made for this run and deleted after it, up with
    ``TAP_HOST`` so the guest's NIC can carry real traffic (to that address only)."""
    host_sender: bool = False
    """With a NIC: ``vm_sender.serve`` in the tap's namespace for the whole run, so the
    guest can have datagrams sent into its NIC from outside (``vm_sender.flood``)."""
    disk_queues: int = 0
    """A multi-queue virtio-blk disk (0: none) on a sparse file of this run: blk-mq gives
    its request queues kernel-managed IRQs, which refuse affinity writes."""
    timeout: float = 900.0
    """The run's cap on an idle machine; scaled by ``load_factor`` (a busy machine
    emulates slower). A run that stops making progress is ended sooner: ``stall``."""
    stall: float = 240.0
    """Seconds without any sign of progress (console output, the guest's stdout or
    stderr growing) before the run is taken as hung and killed; scaled like
    ``timeout``. A slow run that keeps progressing is waited for."""
    systemd: bool = False
    """Boot systemd as PID 1 and run the command as its unit (instead of virtme's init)."""
    expose: Sequence[Path] = ()
    """Host paths the command reads (with ``systemd``: those under /tmp are kept)."""
    bundle_extra: Sequence[tuple[Path, str]] = field(default_factory=tuple)
    workdir: Path | None = None

    def python(self) -> list[str]:
        """The guest's Python command (the bundle first on its path, no site)."""
        return [sys.executable, "-S"]

    def _devices(self, base: Path) -> tuple[list[str], str | None]:
        """QEMU options for the disk and NIC asked for, and the namespace made for the
        NIC's tap (None without a NIC); the caller deletes it."""
        qemu_opts = []
        if self.disk_queues:
            disk = base / "disk.img"
            with open(disk, "wb") as fh:
                fh.truncate(16 << 20)
            qemu_opts.append(
                f"-drive file={disk},if=none,id=d0,format=raw "
                f"-device virtio-blk-pci,drive=d0,num-queues={self.disk_queues}"
            )
        netns = None
        if self.queues:
            netns = f"wgtvm-{os.getpid()}-{secrets.token_hex(2)}"
            run(["ip", "netns", "add", netns])
            # Made before QEMU, which attaches its queues to it: the host end has an
            # address and answers the guest (pings), all inside this run's namespace.
            tap = ["ip", "-n", netns]
            run([*tap, "tuntap", "add", "dev", TAP, "mode", "tap", "multi_queue"])
            run([*tap, "addr", "add", f"{TAP_HOST}/24", "dev", TAP])
            run([*tap, "link", "set", TAP, "up"])
            vectors = 2 * self.queues + 2
            qemu_opts.append(
                f"-netdev tap,id=mq0,queues={self.queues},script=no,"
                f"downscript=no,vhost=off,ifname={TAP} "
                f"-device virtio-net-pci,netdev=mq0,mq=on,vectors={vectors}"
            )
        return qemu_opts, netns

    def _sender(self, netns: str | None) -> subprocess.Popen[bytes] | None:
        if netns is None:
            return None
        script = str(Path(__file__).with_name("vm_sender.py"))  # stdlib only: no imports
        return subprocess.Popen(
            [
                _require("ip"),
                "netns",
                "exec",
                netns,
                sys.executable,
                "-S",
                script,
                TAP_HOST,
                TAP_GUEST,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def _systemd_command(
        self, kernel: Path, shared: Path, runner: Path, qemu_opts: Sequence[str]
    ) -> list[str]:
        """virtme-run with our own kernel command line: systemd as PID 1 (``SYSTEMD_INIT``)
        booting to ``wgt-vm.target``: basic.target and the runner, nothing of this
        machine's multi-user services. Its console goes to ``serial.log`` in the shared
        directory. The venv and ``expose`` stay visible under the guest's fresh /tmp."""
        tmp = Path(tempfile.gettempdir())
        expose = [Path(sys.prefix), *self.expose]
        keep = sorted({str(p) for p in expose if p.is_absolute() and p.is_relative_to(tmp)})
        overlaid = ("/etc", "/var", "/opt", "/root", "/home", "/usr", "/srv")
        cached = sorted(
            {
                str(p)
                for p in expose
                if p.is_absolute() and str(p) not in keep and not str(p).startswith(overlaid)
            }
        )
        if any(not _plain(p) for p in (*keep, *cached)) or not _plain(str(shared)):
            raise LabError(f"VM paths must be plain (letters, digits, ./_-): {keep} {shared}")
        script = SYSTEMD_INIT.format(
            shared=shared, keep=" ".join(keep) or '""', cached=" ".join(cached) or '""'
        )
        (shared / "init.sh").write_text(script)
        units = shared / "units"
        units.mkdir()
        for name, text in SYSTEMD_UNITS.items():
            (units / name).write_text(text.format(runner=runner))
        cmdline = (
            "console=ttyS1 panic=-1 nr_open=1048576 luks=no audit=off systemd.zram=0 "
            "container= systemd.unit=wgt-vm.target systemd.show_status=1 "
            f"init=/bin/sh -- {shared}/init.sh"
        )
        cmd = [_require("virtme-run"), "--kimg", str(kernel), "--mods", "auto"]
        cmd += ["--disable-kvm", "--cpus", str(self.cpus), "--memory", self.memory]
        cmd += ["--rwdir", str(shared)]
        extra = ["-serial", f"file:{shared}/serial.log", *" ".join(qemu_opts).split()]
        extra += CACHED_ROOT
        # QEMU takes the last -append: ours replaces virtme's (which would start its init).
        extra += ["-append", cmdline]
        return cmd + [f"--qemu-opt={opt}" for opt in extra]

    def _virtme_command(
        self, kernel: Path, shared: Path, runner: Path, qemu_opts: Sequence[str]
    ) -> list[str]:
        cmd = [_require("vng"), "--run", str(kernel), "--disable-kvm", "--cpus", str(self.cpus)]
        cmd += ["--memory", self.memory, "--rwdir", str(shared), "--exec", str(runner)]
        if qemu_opts:
            cmd.append("--qemu-opts=" + " ".join(qemu_opts))
        return cmd

    @staticmethod
    def _runner(shared: Path, argv: Sequence[str], env: dict[str, str] | None) -> Path:
        """The guest's script: the bundle in place, the environment, the command with its
        output and exit code written to the shared directory."""
        (shared / "argv.json").write_text(json.dumps(list(argv)))
        runner = shared / "run.sh"
        variables = {
            "PYTHONPATH": GUEST_BUNDLE,
            "PYTHONDONTWRITEBYTECODE": "1",
            "PATH": f"{Path(sys.executable).parent}:/usr/sbin:/usr/bin:/sbin:/bin",
            **(env or {}),
        }
        exports = "".join(f"export {k}={_quote(v)}\n" for k, v in variables.items())
        runner.write_text(
            "#!/bin/sh\n"
            f"cp {shared}/bundle.zip {GUEST_BUNDLE}\n"
            f"{exports}"
            "cd /\n"
            f"{_quote(sys.executable)} -S -c "
            + _quote(
                "import json,subprocess,sys;"
                f"a=json.load(open({str(shared / 'argv.json')!r}));"
                f"o=open({str(shared / 'stdout')!r},'wb');"
                f"e=open({str(shared / 'stderr')!r},'wb');"
                "r=subprocess.run(a,stdout=o,stderr=e).returncode;"
                f"open({str(shared / 'rc')!r},'w').write(str(r))"
            )
            + "\n"
        )
        runner.chmod(0o755)
        return runner

    def _execute(
        self, cmd: Sequence[str], base: Path, shared: Path, began: float
    ) -> tuple[str, int]:
        """Run QEMU (through virtme) to its end: its console output and exit status."""
        factor = load_factor(self.cpus)
        path = f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}"
        proc = subprocess.Popen(
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=str(base),
            env={**os.environ, "PATH": path},
            start_new_session=True,  # QEMU and virtme's helpers: one group to stop
        )
        output: list[str] = []
        reader = threading.Thread(
            target=lambda: output.extend(proc.stdout or ()), name="vm-console", daemon=True
        )
        reader.start()
        try:
            self._wait(proc, shared, output, factor, began)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            reader.join(timeout=10)
            if proc.stdout is not None:
                proc.stdout.close()
        return "".join(output), proc.returncode

    def _wait(
        self,
        proc: subprocess.Popen[str],
        shared: Path,
        output: list[str],
        factor: float,
        began: float,
    ) -> None:
        """Wait for the VM while it makes progress, within the scaled cap; kill it with
        its console in the error when it stalls or runs past the cap."""
        cap, stall = self.timeout * factor, self.stall * factor
        watched = [shared / name for name in ("serial.log", "stdout", "stderr")]
        last_mark: tuple[int, ...] = ()
        last_progress = began
        while True:
            try:
                proc.wait(timeout=2.0)
                return
            except subprocess.TimeoutExpired:
                pass
            now = time.monotonic()
            mark = (len(output), *(p.stat().st_size if p.exists() else -1 for p in watched))
            if mark != last_mark:
                last_mark, last_progress = mark, now
            why = None
            if now - last_progress > stall:
                why = f"made no progress for {stall:.0f} s (load factor {factor:.1f})"
            elif now - began > cap:
                why = f"did not finish in {cap:.0f} s (load factor {factor:.1f})"
            if why is not None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                serial = shared / "serial.log"
                console = serial.read_text(errors="replace") if serial.exists() else ""
                console += "".join(output)
                guest = shared / "stderr"
                tail = guest.read_text(errors="replace")[-2000:] if guest.exists() else ""
                raise LabError(f"the VM {why}; guest stderr: {tail}; console: {console[-3000:]}")

    def run(self, argv: Sequence[str], env: dict[str, str] | None = None) -> VmResult:
        if self.host_sender and not self.queues:
            raise LabError("a host sender needs the VM's NIC (queues > 0)")
        kernel = find_kernel()
        _require("qemu-system-x86_64")
        _require("busybox")
        base = Path(tempfile.mkdtemp(prefix="wg-tuner-vm-", dir=self.workdir))
        netns: str | None = None
        sender: subprocess.Popen[bytes] | None = None
        try:
            bundle = python_bundle(
                Path(tempfile.gettempdir()) / "wg-tuner-vm-cache", self.bundle_extra
            )
            shared = base / "shared"
            shared.mkdir()
            shutil.copy(bundle, shared / "bundle.zip")
            runner = self._runner(shared, argv, env)
            qemu_opts, netns = self._devices(base)
            build = self._systemd_command if self.systemd else self._virtme_command
            cmd = build(kernel, shared, runner, qemu_opts)
            if netns:
                cmd = ["ip", "netns", "exec", netns, *cmd]
            sender = self._sender(netns if self.host_sender else None)
            began = time.monotonic()
            out, returncode = self._execute(cmd, base, shared, began)
            seconds = time.monotonic() - began
            serial = shared / "serial.log"
            console = (serial.read_text(errors="replace") if serial.exists() else out)[-40000:]
            rc_file = shared / "rc"
            if not rc_file.exists():
                raise LabError(f"the VM ran nothing (vng exited {returncode}): {console[-3000:]}")
            return VmResult(
                int(rc_file.read_text() or "-1"),
                (shared / "stdout").read_text(errors="replace"),
                (shared / "stderr").read_text(errors="replace"),
                seconds,
                console,
            )
        finally:
            if sender is not None:
                sender.kill()
                sender.wait()
            if netns:
                run(["ip", "netns", "del", netns], check=False)
            shutil.rmtree(base, ignore_errors=True)


SYSTEMD_INIT = """#!/bin/sh
# PID 1 until systemd: writable overlays over the read-only shared root, an empty /tmp
# (the host's would be emptied, slowly, by systemd-tmpfiles; the paths the run needs
# from it are bound back), the run's directory at its host path, then systemd itself.
mount -t proc proc /proc
mount -t tmpfs -o mode=755 tmpfs /run
modprobe overlay
mkdir -p /run/wgt-vm/host
# The root again, read-only with the page and dentry caches on (virtme mounts it with
# none, so each of Python's many stats and reads crossed 9p under emulation): the
# overlays' lower layers and every path the run reads come from it.
R=/run/wgt-vm/host
mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288,cache=loose,ro wgtroot $R || R=
for d in etc var opt root home usr srv; do
  mkdir -p /run/wgt-vm/$d/u /run/wgt-vm/$d/w
  mount -t overlay overlay -o lowerdir=$R/$d,upperdir=/run/wgt-vm/$d/u,workdir=/run/wgt-vm/$d/w /$d
done
for p in {cached}; do
  [ -n "$R" ] && [ -n "$p" ] && mount --bind $R$p $p
done
n=0
for p in {keep}; do
  [ -n "$p" ] || continue
  mkdir -p /run/wgt-vm/keep$n && mount --bind $R$p /run/wgt-vm/keep$n && n=$((n + 1))
done
mount -t tmpfs -o mode=1777 tmpfs /tmp
n=0
for p in {keep}; do
  [ -n "$p" ] || continue
  mkdir -p $p && mount --move /run/wgt-vm/keep$n $p && n=$((n + 1))
done
mkdir -p {shared}
mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288 virtme.initmount0 {shared}
: > /etc/fstab
umount /proc
# The shared root has /.dockerenv: without this systemd would take itself for a
# container and read its options from its own argv instead of the kernel's command line.
export container=
export SYSTEMD_UNIT_PATH={shared}/units:
exec /lib/systemd/systemd
"""

SYSTEMD_UNITS = {
    "wgt-vm.target": """[Unit]
Description=wg-tuner VM run
Requires=basic.target wgt-vm.service
After=basic.target
""",
    "wgt-vm.service": """[Unit]
Description=wg-tuner VM run: the command, then power off
After=basic.target
SuccessAction=poweroff-force
FailureAction=poweroff-force
[Service]
Type=oneshot
ExecStart=/bin/sh {runner}
""",
}


def _plain(path: str) -> bool:
    return all(c.isalnum() or c in "/._-" for c in path)


def _quote(text: str) -> str:
    """Single-quote for the runner script (our own constants and paths only)."""
    return "'" + text.replace("'", "'\"'\"'") + "'"
