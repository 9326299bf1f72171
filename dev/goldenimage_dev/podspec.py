"""Turning a Pod's container into a local process description, as a kubelet would prepare a
container: volumes materialized into a per-pod directory, env resolved (including `valueFrom`),
`$(VAR)` references expanded, and the pod's paths mapped onto the local directory.

Without a container's own filesystem, a program finds its files through the paths the pod spec
gives it: in env values, in arguments (whole, or after `--flag=`) and in `workingDir`, a mount
path (or the termination message path) is replaced with its local directory. The command's
executable is the image's binary, which here is the host's, and is left alone.

Pure apart from writing the materialized files; the Kubernetes reads are passed in as callables.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Reads a ConfigMap's or Secret's data as bytes (see config_map_data and secret_data) by
# namespace and name; None when it does not exist.
Reader = Callable[[str, str], dict[str, bytes] | None]

TERMINATION_LOG = "termination-log"


class PodSpecError(Exception):
    """The container cannot be prepared yet (kubelet: CreateContainerConfigError)."""


class UnsupportedError(Exception):
    """The pod uses something the local executor does not provide."""


@dataclass
class Prepared:
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    termination_log: Path


def prepare(
    pod: Mapping[str, Any],
    directory: Path,
    *,
    read_config_map: Reader,
    read_secret: Reader,
    base_env: Mapping[str, str],
) -> Prepared:
    spec = pod["spec"]
    if spec.get("initContainers"):
        raise UnsupportedError("init containers are not supported by the local pod executor")
    containers = spec["containers"]
    if len(containers) != 1:
        raise UnsupportedError("the local pod executor runs pods with exactly one container")
    container = containers[0]
    if not container.get("command"):
        raise UnsupportedError("the local pod executor needs an explicit command (images are not run)")

    volumes = _materialize_volumes(spec.get("volumes", []), directory / "v", pod, read_config_map, read_secret)
    paths: list[tuple[str, Path]] = []
    for mount in container.get("volumeMounts", []):
        if mount["name"] not in volumes:
            raise PodSpecError(f"volume {mount['name']!r} is not defined")
        local = volumes[mount["name"]]
        if mount.get("subPath"):
            local = local / mount["subPath"]
        paths.append((mount["mountPath"].rstrip("/") or "/", local))
    termination_log = directory / TERMINATION_LOG
    termination_log.write_text("")
    paths.append((container.get("terminationMessagePath", "/dev/termination-log"), termination_log))
    paths.sort(key=lambda item: len(item[0]), reverse=True)

    home = directory / "home"
    home.mkdir(exist_ok=True)
    # What the container would see, with `$(VAR)` expanded once as Kubernetes does; then its
    # pod paths are mapped. Command and args, too, see the container's declared variables only.
    declared = _resolve_env(container, pod, read_config_map, read_secret)
    env = {"HOME": str(home), **base_env, **{name: translate(value, paths) for name, value in declared.items()}}
    command = [expand(a, declared) for a in [*container["command"], *container.get("args", [])]]
    # The executable is the image's, which is the host's here: only its arguments carry pod paths.
    argv = [command[0], *(translate(a, paths) for a in command[1:])]
    cwd = Path(translate(container["workingDir"], paths)) if container.get("workingDir") else directory
    cwd.mkdir(parents=True, exist_ok=True)
    return Prepared(argv=argv, env=env, cwd=cwd, termination_log=termination_log)


_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion: unknown references stay as written, `$$` escapes."""

    def repl(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env.get(name, match.group(0))

    return _REF.sub(repl, text)


def translate(text: str, paths: list[tuple[str, Path]]) -> str:
    """Map pod paths onto local ones: a whole value, or the value after `--flag=`."""
    prefix, sep, value = text.partition("=") if text.startswith("-") else ("", "", text)
    for pod_path, local in paths:
        if value == pod_path or value.startswith(pod_path.rstrip("/") + "/"):
            return f"{prefix}{sep}{local}{value[len(pod_path) :]}"
    return text


def secret_data(data: Mapping[str, str] | None) -> dict[str, bytes]:
    """A Secret's `data` (base64) as bytes."""
    return {k: base64.b64decode(v) for k, v in (data or {}).items()}


def config_map_data(data: Mapping[str, str] | None, binary_data: Mapping[str, str] | None) -> dict[str, bytes]:
    """A ConfigMap's `data` and `binaryData` (base64) as bytes."""
    return {**{k: v.encode() for k, v in (data or {}).items()}, **secret_data(binary_data)}


def _text(value: bytes, what: str) -> str:
    try:
        return value.decode()
    except UnicodeDecodeError:
        raise PodSpecError(f"{what} is not UTF-8 text and cannot be an environment variable") from None


def _field_ref(pod: Mapping[str, Any], path: str) -> str:
    meta, spec, status = pod["metadata"], pod["spec"], pod.get("status", {})
    if m := re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path):
        return str(meta.get(m.group(1), {}).get(m.group(2), ""))
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.hostIP": "127.0.0.1",
        "status.podIP": status.get("podIP", "127.0.0.1"),
    }
    if path not in simple:
        raise UnsupportedError(f"fieldRef {path!r} is not supported by the local pod executor")
    return str(simple[path] or "")


def _resolve_env(
    container: Mapping[str, Any], pod: Mapping[str, Any], read_config_map: Reader, read_secret: Reader
) -> dict[str, str]:
    namespace = pod["metadata"]["namespace"]
    out: dict[str, str] = {}
    for source in container.get("envFrom", []):
        prefix = source.get("prefix", "")
        if "configMapRef" in source:
            ref, data = source["configMapRef"], read_config_map(namespace, source["configMapRef"]["name"])
            kind = "configmap"
        else:
            ref, data = source["secretRef"], read_secret(namespace, source["secretRef"]["name"])
            kind = "secret"
        if data is None:
            if ref.get("optional"):
                continue
            raise PodSpecError(f'{kind} "{ref["name"]}" not found')
        out.update({prefix + k: _text(v, f"key {k!r} of {kind} {ref['name']!r}") for k, v in data.items()})
    for item in container.get("env", []):
        if "valueFrom" not in item:
            out[item["name"]] = expand(item.get("value", ""), out)
            continue
        value_from = item["valueFrom"]
        if "fieldRef" in value_from:
            out[item["name"]] = _field_ref(pod, value_from["fieldRef"]["fieldPath"])
            continue
        for key, reader, kind in (
            ("configMapKeyRef", read_config_map, "configmap"),
            ("secretKeyRef", read_secret, "secret"),
        ):
            if key in value_from:
                ref = value_from[key]
                data = reader(namespace, ref["name"])
                if data is None or ref["key"] not in data:
                    if ref.get("optional"):
                        break
                    missing = (
                        f'{kind} "{ref["name"]}" not found'
                        if data is None
                        else f"key {ref['key']!r} not found in {kind} {ref['name']!r}"
                    )
                    raise PodSpecError(f"couldn't find {missing}")
                out[item["name"]] = _text(data[ref["key"]], f"key {ref['key']!r} of {kind} {ref['name']!r}")
                break
        else:
            raise UnsupportedError(f"env {item['name']!r}: {sorted(value_from)} is not supported")
    return out


def _write_items(target: Path, data: Mapping[str, bytes], items: list[dict[str, Any]] | None, mode: int) -> None:
    target.mkdir(parents=True, exist_ok=True)
    selected = [(i["key"], i["path"], i.get("mode", mode)) for i in items] if items else [(k, k, mode) for k in data]
    for key, rel, file_mode in selected:
        if key not in data:
            raise PodSpecError(f"key {key!r} not found")
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        # An earlier attempt may have left it read-only (defaultMode 0400): replace, not rewrite.
        path.unlink(missing_ok=True)
        path.write_bytes(data[key])
        path.chmod(file_mode)


def _materialize_volumes(
    volumes: list[dict[str, Any]],
    root: Path,
    pod: Mapping[str, Any],
    read_config_map: Reader,
    read_secret: Reader,
) -> dict[str, Path]:
    namespace = pod["metadata"]["namespace"]
    out: dict[str, Path] = {}
    for volume in volumes:
        name = volume["name"]
        target = root / name
        if "emptyDir" in volume:
            target.mkdir(parents=True, exist_ok=True)
        elif "configMap" in volume or "secret" in volume:
            _materialize_source(volume, target, namespace, read_config_map, read_secret)
        elif "projected" in volume:
            for source in volume["projected"].get("sources", []):
                if not ({"configMap", "secret"} & source.keys()):
                    raise UnsupportedError(f"volume {name!r}: projected {sorted(source)} is not supported")
                _materialize_source(source, target, namespace, read_config_map, read_secret)
        else:
            kinds = sorted(k for k in volume if k != "name")
            raise UnsupportedError(f"volume {name!r}: {kinds} volumes are not supported by the local pod executor")
        out[name] = target
    return out


def _materialize_source(
    source: Mapping[str, Any], target: Path, namespace: str, read_config_map: Reader, read_secret: Reader
) -> None:
    if "configMap" in source:
        ref, data, kind = (
            source["configMap"],
            read_config_map(namespace, source["configMap"]["name"]),
            "configmap",
        )
        name = ref["name"]
    else:
        ref, data, kind = source["secret"], read_secret(namespace, source["secret"]["secretName"]), "secret"
        name = ref["secretName"]
    if data is None:
        if ref.get("optional"):
            target.mkdir(parents=True, exist_ok=True)
            return
        raise PodSpecError(f'MountVolume.SetUp failed: {kind} "{name}" not found')
    _write_items(target, data, ref.get("items"), ref.get("defaultMode", 0o644))
