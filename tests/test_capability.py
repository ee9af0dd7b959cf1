"""resnet_toolkit.capability and sysinfo: what oneDNN runs is asked of oneDNN (in a child process), capped by
DNNL_MAX_CPU_ISA; refusals are one line naming the ISA; the answer is cached for the process and its children."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from helpers import ROOT

from resnet_toolkit import capability
from resnet_toolkit.capability import CACHE_ENV, FEATURES, Capabilities
from resnet_toolkit.errors import UserError


def _probe_in_child(max_isa: str | None) -> Capabilities:
    """A fresh process's probe (no inherited cache), with oneDNN capped at ``max_isa`` when given."""
    env = {k: v for k, v in os.environ.items() if k not in (CACHE_ENV, "DNNL_MAX_CPU_ISA")}
    if max_isa:
        env["DNNL_MAX_CPU_ISA"] = max_isa
    code = "import json, dataclasses; from resnet_toolkit.capability import probe; " \
           "print(json.dumps(dataclasses.asdict(probe())))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return Capabilities(**json.loads(out.stdout.strip().splitlines()[-1]))


def test_avx2_cap_has_no_bfloat16_but_int8():
    """oneDNN 2.4 has no bfloat16 convolution below AVX-512; INT8 runs on AVX2 (slower without VNNI). The cap is
    what an AVX2-only CPU gets, on any machine."""
    caps = _probe_in_child("AVX2")
    assert caps.isa == "Intel AVX2" and caps.max_cpu_isa == "AVX2" and caps.onednn.startswith("v2.")
    assert not caps.supports("bfloat16") and caps.supports("int8")
    assert "could not create a primitive descriptor" in caps.errors["bfloat16"]
    assert not caps.native_bf16
    # measured: the fused BN+ReLU backward beside a grouped convolution runs on AVX2 but its gradients are wrong
    assert not caps.supports("fused_bn_relu_beside_grouped_conv")
    assert caps.errors["fused_bn_relu_beside_grouped_conv"].startswith("it runs, but its gradients differ")


def test_probe_reports_every_feature_and_hands_itself_to_children():
    """The process's probe answers for every feature under the cap in force, and puts its answer in the
    environment that child processes (training workers, tools run by tests) inherit."""
    native = capability.probe()
    assert set(native.features) == set(FEATURES)
    assert native.isa and native.max_cpu_isa == os.environ.get("DNNL_MAX_CPU_ISA", "")
    assert json.loads(os.environ[CACHE_ENV])["isa"] == native.isa  # handed to child processes


def test_refusal_is_one_line_naming_the_isa():
    caps = Capabilities("Intel AVX2", "AVX2", "v2.4.4", {f: f != "bfloat16" for f in FEATURES},
                        {"bfloat16": "MXNetError: could not create a primitive descriptor iterator"})
    caps.require("int8", "INT8 quantization")
    with pytest.raises(UserError) as exc:
        caps.require("bfloat16", "--dtype bfloat16")
    assert str(exc.value) == (
        "--dtype bfloat16 is not available on this CPU: oneDNN runs Intel AVX2 (capped by DNNL_MAX_CPU_ISA=AVX2), "
        "and --dtype bfloat16 needs oneDNN's bfloat16 kernels, which need AVX-512 (fast only with AVX512-BF16 or "
        "AMX) (python -m resnet_toolkit.sysinfo shows what this machine can do)")
    with pytest.raises(ValueError, match="unknown feature 'fp8'"):
        caps.supports("fp8")


def test_native_bf16_read_from_onednn_words():
    assert Capabilities("Intel AVX-512 with Intel DL Boost and bfloat16 support", "").native_bf16
    assert Capabilities("Intel AVX-512 with Intel AMX", "").native_bf16
    assert not Capabilities("Intel AVX-512 with Intel DL Boost", "").native_bf16


def test_a_dead_probe_means_nothing_is_available(monkeypatch):
    """A child that crashes (a kernel killed by SIGILL, say) prints no verdict: every feature is unavailable,
    with the reason, instead of a guess."""
    monkeypatch.delenv(CACHE_ENV, raising=False)
    monkeypatch.setattr(capability.subprocess, "run",
                        lambda *a, **k: subprocess.CompletedProcess(a, -4, stdout="", stderr="Illegal instruction"))
    capability.probe.cache_clear()
    try:
        caps = capability.probe()
        assert caps.features == {f: False for f in FEATURES}
        assert set(caps.errors.values()) == {"the capability probe process did not finish"}
    finally:
        capability.probe.cache_clear()
        monkeypatch.undo()
        os.environ.pop(CACHE_ENV, None)
        capability.probe()


def test_cache_is_reused_only_under_the_same_cap(monkeypatch):
    native = capability.probe()
    calls = []
    monkeypatch.setattr(capability.subprocess, "run", lambda *a, **k: calls.append(a) or
                        subprocess.CompletedProcess(a, 0, stdout="", stderr=""))
    capability.probe.cache_clear()
    try:
        assert capability.probe() == native and calls == []  # the inherited answer, no child
        capability.probe.cache_clear()
        monkeypatch.setenv("DNNL_MAX_CPU_ISA", "SOMETHING_ELSE")
        capability.probe()
        assert len(calls) == 1  # another cap: asked again
    finally:
        monkeypatch.undo()
        capability.probe.cache_clear()
        os.environ[CACHE_ENV] = json.dumps(__import__("dataclasses").asdict(native))
        capability.probe()


def test_sysinfo_reports_versions_isa_and_features():
    out = subprocess.run([sys.executable, "-m", "resnet_toolkit.sysinfo"], capture_output=True, text=True,
                         cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    caps = capability.probe()
    assert "mxnet         1.9.1" in out.stdout and f"runs: {caps.isa}" in out.stdout
    for name in FEATURES:
        assert f"{'yes' if caps.supports(name) else 'no '} {name}" in out.stdout
    js = subprocess.run([sys.executable, "-m", "resnet_toolkit.sysinfo", "--json"], capture_output=True, text=True,
                        cwd=ROOT, timeout=300)
    info = json.loads(js.stdout)
    assert info["onednn_isa"] == caps.isa and info["features"] == caps.features and "MKLDNN" in info["mxnet_features"]


def test_above_avx2():
    from resnet_toolkit.sysinfo import above_avx2

    assert above_avx2("Intel AVX-512 with Intel DL Boost and bfloat16 support")
    assert above_avx2("Intel AVX-512 with Intel AMX")
    assert not above_avx2("Intel AVX2") and not above_avx2("Intel AVX2 with Intel DL Boost")
    assert not above_avx2("Intel SSE4.1")
