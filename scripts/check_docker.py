#!/usr/bin/env python3
"""Consistency checks for the container and deployment files.

    python3 scripts/check_docker.py [--root DIR]

1. services:  each of the six services is in docker-compose.yml with an image or
              build, `command: serve <name>`, a published gRPC and metrics port,
              and a healthcheck (its own, or the Dockerfile's HEALTHCHECK); the
              PULSE_<SERVICE>_URL peer addresses name the right compose service.
2. settings:  every PULSE_* name in docker-compose.yml, the Dockerfile's ENV lines
              and terraform/**/*.tf is a field of `pub struct Config`
              (services/common/src/config.rs) or a client-side name.
3. paths:     everything the Dockerfile COPYs/ADDs from the context, and every host
              path compose mounts or builds from, exists.
4. scrape:    observability/prometheus/prometheus.yml (if present) scrapes every
              compose service that serves metrics, on its container metrics port,
              and its rule_files are mounted into the prometheus container.

Prints one line per check (details indented below a failure); exits 1 on any failure.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

try:
    import yaml
except ImportError:  # pragma: no cover
    print("check_docker.py needs PyYAML: pip install pyyaml", file=sys.stderr)
    sys.exit(2)

SERVICES = ["datasource", "snapshot", "trainer", "inference", "lineage", "drift"]
CLIENT_SIDE = {"PULSE_ENDPOINT", "PULSE_API_KEY", "PULSE_CONFIG"}
# Being added to Config alongside this check; reported if absent, not failed on twice.
EXPECTED_NEW = [f"{s}_url" for s in SERVICES] + ["tls_cert", "tls_key", "tls_ca"]
DEFAULT_GRPC_PORT, DEFAULT_METRICS_PORT = 50051, 9464
PULSE_NAME = re.compile(r"\bPULSE_[A-Z0-9_]*[A-Z0-9]\b")
DOCKERFILE = "docker/Dockerfile"
COMPOSE = "docker-compose.yml"
CONFIG_RS = "services/common/src/config.rs"


class Check:
    def __init__(self, number: int, name: str):
        self.number, self.name = number, name
        self.errors: list[str] = []
        self.notes: list[str] = []
        self.skipped: str | None = None

    def fail(self, msg: str) -> None:
        self.errors.append(msg)

    def note(self, msg: str) -> None:
        self.notes.append(msg)

    def report(self, summary: str) -> bool:
        if self.skipped:
            status = "SKIP"
            summary = self.skipped
        else:
            status = "FAIL" if self.errors else "PASS"
            if self.errors:
                summary = f"{len(self.errors)} problem(s); {summary}"
        print(f"[{status}] {self.number}. {self.name}: {summary}")
        for e in self.errors:
            print(f"         - {e}")
        for n in self.notes:
            print(f"         note: {n}")
        return not self.errors


# ---------------------------------------------------------------- parsing helpers

def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    out, buf = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        parts = buf.strip().split(None, 1)
        if parts:
            out.append((parts[0].upper(), parts[1] if len(parts) > 1 else ""))
        buf = ""
    if buf.strip():
        parts = buf.strip().split(None, 1)
        out.append((parts[0].upper(), parts[1] if len(parts) > 1 else ""))
    return out


def dockerfile_env(instrs) -> dict[str, str]:
    env: dict[str, str] = {}
    for ins, args in instrs:
        if ins != "ENV":
            continue
        if "=" not in args.split(None, 1)[0]:  # legacy `ENV KEY value`
            k, _, v = args.partition(" ")
            env[k] = v.strip()
            continue
        for m in re.finditer(r'([A-Za-z_][A-Za-z0-9_]*)=("(?:[^"\\]|\\.)*"|\S*)', args):
            env[m.group(1)] = m.group(2).strip('"')
    return env


def copy_sources(args: str) -> list[str] | None:
    """Context sources of a COPY/ADD, or None when it copies from a stage/image."""
    words = args.split()
    flags = [w for w in words if w.startswith("--")]
    rest = " ".join(w for w in words if not w.startswith("--"))
    items = json.loads(rest) if rest.startswith("[") else rest.split()
    if any(f.startswith("--from") for f in flags):
        return None
    return items[:-1]


def config_fields(text: str) -> list[str]:
    m = re.search(r"pub struct Config\s*\{(.*?)\n\}", text, re.S)
    if not m:
        return []
    return re.findall(r"^\s*pub\s+([a-z_][a-z0-9_]*)\s*:", m.group(1), re.M)


def env_of(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        out = {}
        for item in env:
            k, _, v = str(item).partition("=")
            out[k] = v
        return out
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def port_of(addr: str | None, default: int) -> int | None:
    if addr is None:
        return default
    if addr == "":
        return None  # disabled
    m = re.search(r":(\d+)$", addr)
    return int(m.group(1)) if m else default


def port_mappings(service: dict) -> list[tuple[str | None, int]]:
    """(published, container port) for each single-port mapping."""
    out = []
    for p in service.get("ports") or []:
        if isinstance(p, dict):
            target = p.get("target")
            if target is not None:
                out.append((str(p["published"]) if p.get("published") is not None else None, int(target)))
            continue
        spec = str(p).split("/")[0]
        parts = spec.rsplit(":", 2) if spec.count(":") <= 2 else [spec]
        container = parts[-1]
        published = parts[-2] if len(parts) >= 2 else None
        if container.isdigit():
            out.append((published, int(container)))
        elif "-" in container:
            lo, hi = container.split("-", 1)
            out.extend((None, n) for n in range(int(lo), int(hi) + 1))
    return out


def command_list(cmd) -> list[str]:
    if cmd is None:
        return []
    if isinstance(cmd, str):
        return cmd.split()
    return [str(c) for c in cmd]


def bind_sources(service: dict) -> list[str]:
    out = []
    for v in service.get("volumes") or []:
        if isinstance(v, dict):
            if v.get("type") == "bind" and v.get("source"):
                out.append(str(v["source"]))
            continue
        src = str(v).split(":", 1)[0]
        if ":" in str(v) and (src.startswith((".", "/", "~"))):
            out.append(src)
    return out


def is_pulse_service(name: str, svc: dict, dockerfile: str) -> bool:
    build = svc.get("build")
    if isinstance(build, dict) and str(build.get("dockerfile", "")).endswith(dockerfile):
        return True
    if isinstance(build, str):
        return False
    image = str(svc.get("image") or "")
    return image.split(":")[0] == "pulse" or image.split(":")[0].endswith("/pulse")


# ---------------------------------------------------------------- the checks

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default=str(Path(__file__).resolve().parent.parent))
    root = Path(ap.parse_args().root)

    ok = True
    compose_path, dockerfile_path = root / COMPOSE, root / DOCKERFILE
    missing = [p for p in (compose_path, dockerfile_path, root / CONFIG_RS) if not p.is_file()]
    if missing:
        for p in missing:
            print(f"[FAIL] setup: {p.relative_to(root)} does not exist")
        return 1
    compose = yaml.safe_load(compose_path.read_text()) or {}
    services: dict[str, dict] = compose.get("services") or {}
    instrs = dockerfile_instructions(dockerfile_path.read_text())
    image_env = dockerfile_env(instrs)
    healthchecks = [a for i, a in instrs if i == "HEALTHCHECK"]
    image_healthcheck = bool(healthchecks) and not healthchecks[-1].strip().upper().startswith("NONE")

    def grpc_port(svc: dict) -> int | None:
        e = env_of(svc)
        return port_of(e.get("PULSE_LISTEN", image_env.get("PULSE_LISTEN")), DEFAULT_GRPC_PORT)

    def metrics_port(svc: dict) -> int | None:
        e = env_of(svc)
        return port_of(e.get("PULSE_METRICS_LISTEN", image_env.get("PULSE_METRICS_LISTEN")), DEFAULT_METRICS_PORT)

    # 1 ---------------------------------------------------------------- services
    c = Check(1, "services")
    if not image_healthcheck:
        c.fail(f"{DOCKERFILE} has no HEALTHCHECK (add `HEALTHCHECK CMD [\"/usr/local/bin/pulse\",\"health\"]`)")
    elif "health" not in healthchecks[-1]:
        c.note(f"{DOCKERFILE} HEALTHCHECK does not run `pulse health`: {healthchecks[-1]}")
    published: dict[str, str] = {}
    for name, svc in services.items():
        for pub, _ in port_mappings(svc or {}):
            if pub:
                hostport = pub.rsplit(":", 1)[-1]
                if hostport in published:
                    c.fail(f"host port {hostport} is published by both {published[hostport]} and {name}")
                published[hostport] = name
    bad_urls: dict[tuple, list[str]] = {}
    for name in SERVICES:
        svc = services.get(name)
        if svc is None:
            c.fail(f"service `{name}` is missing from {COMPOSE}")
            continue
        if not (svc.get("image") or svc.get("build")):
            c.fail(f"{name}: neither image nor build")
        cmd = command_list(svc.get("command"))
        if cmd != ["serve", name]:
            c.fail(f"{name}: command is {cmd or '(none: image default `up`)'}, want [\"serve\", \"{name}\"]")
        containers = {cp for pub, cp in port_mappings(svc) if pub}
        g, m = grpc_port(svc), metrics_port(svc)
        if g not in containers:
            c.fail(f"{name}: no published port maps to its gRPC port {g} (PULSE_LISTEN)")
        if m is None:
            c.fail(f"{name}: metrics are disabled (PULSE_METRICS_LISTEN is empty)")
        elif m not in containers:
            c.fail(f"{name}: no published port maps to its metrics port {m} (PULSE_METRICS_LISTEN)")
        hc = svc.get("healthcheck")
        if hc and hc.get("disable"):
            c.fail(f"{name}: healthcheck disabled")
        elif not hc and not is_pulse_service(name, svc, DOCKERFILE):
            c.fail(f"{name}: no healthcheck, and it does not use the image from {DOCKERFILE}")
        elif not hc and not image_healthcheck:
            c.fail(f"{name}: no healthcheck of its own, and the image's HEALTHCHECK is missing")
        for peer in SERVICES:
            url = env_of(svc).get(f"PULSE_{peer.upper()}_URL")
            if url is None:
                c.fail(f"{name}: PULSE_{peer.upper()}_URL is not set (it would look for {peer} at its own address)")
                continue
            um = re.fullmatch(r"https?://([^:/]+)(?::(\d+))?/?", url)
            want_port = grpc_port(services.get(peer) or {})
            if not um or um.group(1) != peer or (um.group(2) and int(um.group(2)) != want_port):
                bad_urls.setdefault((peer, url, want_port), []).append(name)
    for (peer, url, want_port), names in bad_urls.items():
        c.fail(f"PULSE_{peer.upper()}_URL={url} (in {', '.join(names)}), want http://{peer}:{want_port}")
    ok &= c.report(f"{len(SERVICES)} services: serve commands, gRPC+metrics ports, healthchecks, peer URLs")

    # 2 ---------------------------------------------------------------- settings
    c = Check(2, "settings")
    fields = config_fields((root / CONFIG_RS).read_text())
    if not fields:
        c.fail(f"could not find `pub struct Config {{ pub <name>: ... }}` in {CONFIG_RS}")
    known = {f"PULSE_{f.upper()}" for f in fields} | CLIENT_SIDE
    absent_new = [f for f in EXPECTED_NEW if f not in fields]
    if absent_new:
        c.note(f"not yet in Config (expected soon): {', '.join(absent_new)}")
    used: dict[str, set[str]] = {}

    def use(n: str, where: str) -> None:
        used.setdefault(n, set()).add(where)

    for sname, svc in services.items():
        for k in env_of(svc or {}):
            if k.startswith("PULSE_"):
                use(k, COMPOSE)
    for n in PULSE_NAME.findall(compose_path.read_text()):  # ${PULSE_X} interpolation, x- anchors
        use(n, COMPOSE)
    for n in image_env:
        if n.startswith("PULSE_"):
            use(n, f"{DOCKERFILE} ENV")
    tf_files = sorted((root / "terraform").rglob("*.tf")) if (root / "terraform").is_dir() else []
    tf_files = [p for p in tf_files if ".terraform" not in p.parts]
    for p in tf_files:
        for n in PULSE_NAME.findall(p.read_text()):
            use(n, str(p.relative_to(root)))
    for n in sorted(used):
        if n not in known:
            hint = " (`__` nesting: Config has no sections)" if "__" in n else ""
            c.fail(f"{n}{hint} is not a setting (no field `{n[6:].lower()}` in Config); used in "
                   + ", ".join(sorted(used[n])))
    if not (root / "terraform").is_dir():
        c.note("terraform/ does not exist yet: not checked")
    ok &= c.report(f"{len(used)} PULSE_* names in compose, Dockerfile ENV, {len(tf_files)} .tf file(s); "
                   f"{len(fields)} Config fields")

    # 3 ---------------------------------------------------------------- paths
    c = Check(3, "paths")
    n_paths = 0
    ctx = root  # the compose build context and the documented `docker build ... .`
    for ins, args in instrs:
        if ins not in ("COPY", "ADD"):
            continue
        srcs = copy_sources(args)
        for s in srcs or []:
            if re.match(r"https?://|git@", s):
                continue
            n_paths += 1
            if not (list(ctx.glob(s)) if any(ch in s for ch in "*?[") else (ctx / s).exists()):
                c.fail(f"{DOCKERFILE}: `{ins} {s}` but {s} does not exist in the build context")
    ignore = dockerfile_path.with_name(dockerfile_path.name + ".dockerignore")
    if not ignore.is_file() and not (root / ".dockerignore").is_file():
        c.fail(f"no {ignore.relative_to(root)} (or .dockerignore): target/ and .git/ would be sent as context")
    for sname, svc in services.items():
        svc = svc or {}
        build = svc.get("build")
        if build is not None:
            bctx = build if isinstance(build, str) else build.get("context", ".")
            bdir = (compose_path.parent / bctx).resolve()
            n_paths += 1
            if not bdir.is_dir():
                c.fail(f"{sname}: build context {bctx} does not exist")
            elif isinstance(build, dict) and build.get("dockerfile"):
                n_paths += 1
                if not (bdir / build["dockerfile"]).is_file():
                    c.fail(f"{sname}: dockerfile {build['dockerfile']} does not exist in {bctx}")
        for src in bind_sources(svc):
            n_paths += 1
            if not (compose_path.parent / src).expanduser().exists():
                c.fail(f"{sname}: mounts {src}, which does not exist (docker would create an empty directory)")
    ok &= c.report(f"{n_paths} COPY sources, build contexts and bind-mount sources")

    # 4 ---------------------------------------------------------------- scrape
    c = Check(4, "scrape")
    prom_svc_name, prom_mounts = None, {}
    for sname, svc in services.items():
        if "prometheus" in str((svc or {}).get("image", "")):
            prom_svc_name = sname
            for v in (svc or {}).get("volumes") or []:
                if isinstance(v, str) and v.count(":") >= 1:
                    src, dst = v.split(":")[:2]
                    prom_mounts[dst] = src
                elif isinstance(v, dict) and v.get("type") == "bind":
                    prom_mounts[str(v.get("target"))] = str(v.get("source"))
    prom_rel = prom_mounts.get("/etc/prometheus/prometheus.yml", "./observability/prometheus/prometheus.yml")
    prom_path = (compose_path.parent / prom_rel).resolve()
    want = {}
    for sname, svc in services.items():
        if is_pulse_service(sname, svc or {}, DOCKERFILE):
            mp = metrics_port(svc or {})
            if mp is not None:
                want[sname] = f"{sname}:{mp}"
    if not prom_path.is_file():
        c.skipped = f"{prom_rel} does not exist yet; {len(want)} targets expected: " + ", ".join(want.values())
    else:
        prom = yaml.safe_load(prom_path.read_text()) or {}
        targets: dict[str, str] = {}
        for job in prom.get("scrape_configs") or []:
            for sc in job.get("static_configs") or []:
                for t in sc.get("targets") or []:
                    targets[str(t)] = str(job.get("job_name"))
        have_hosts = {t.rsplit(":", 1)[0]: t for t in targets}
        for sname, t in want.items():
            if t in targets:
                continue
            if sname in have_hosts:
                c.fail(f"{sname} is scraped at {have_hosts[sname]}, but its metrics port in the container is {t}")
            else:
                c.fail(f"no scrape target {t} for compose service {sname}")
        extra = [t for t in targets if t.rsplit(":", 1)[0] not in set(services) | {"localhost", "127.0.0.1"}]
        if extra:
            c.note("targets that are not compose services (fine for other deployments): " + ", ".join(extra))
        prom_dir = "/etc/prometheus"
        for rf in prom.get("rule_files") or []:
            in_container = rf if rf.startswith("/") else f"{prom_dir}/{rf}"
            if "*" in rf:
                if not any(d.startswith(in_container.rsplit("/", 1)[0]) for d in prom_mounts):
                    c.fail(f"rule_files {rf}: nothing is mounted there in the {prom_svc_name} container")
            elif in_container not in prom_mounts:
                c.fail(f"rule_files {rf} -> {in_container} is not mounted into the {prom_svc_name} container "
                       f"(mounted: {', '.join(sorted(prom_mounts)) or 'nothing'})")
    ok &= c.report(f"{len(want)} Pulse metrics targets in {prom_rel}")

    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
