"""halo-ray: distributed RLVR for code LLMs on Ray.

The driver API (Ray is imported only when one of these is first used, so ``import halo_ray``
stays light for the verifier and data tools):

- ``halo_ray.init(cluster=None)``: start a local Ray session or join ``RAY_ADDRESS``.
- ``halo_ray.RolloutGroup(model, rollout, plan=None)``: rollout actors (vLLM engines) with ``submit``,
  ``generate``, ``sync_weights`` (from a learner, by object ref or over a collective:
  ``rollout.weight_transfer``), ``update_weights`` (by ref) and ``heal`` (engines Ray restarted get the
  latest weights); ``halo_ray.driver.placement`` plans the bundles of engines and learner ranks.
- ``halo_ray.generate(config, prompts)``: sample completions into an Arrow ``RolloutBatch``.
- ``halo_ray.benchmark(config)``: pass@k of a model on a problems file.
- ``halo_ray.sft(config)``, ``halo_ray.raft(config, resume=False)``, ``halo_ray.grpo(config, resume=False)``:
  SFT, and RAFT and GRPO on the asynchronous stream.
- ``halo_ray.dpo(config)``: seed 002's test-based DPO experiment (preferences, DPO, paired evaluation);
  ``halo_ray.online_dpo(config, resume=False)``: DPO on the asynchronous stream.
- ``halo_ray.srl.train(config, resume=False)``: SRL (seed 003) on the stream; ``halo_ray.srl.evaluate_model(config)``:
  its §27 metrics of a model on held-out tasks (``halo_ray.srl`` is also the package of traces and rewards).
- ``halo_ray.demo(config)``: the embedded default (SFT then RAFT, or GRPO, on the demo task family).
- ``halo_ray.shutdown()``: stop the driver's actors and disconnect.

Config sections live in ``halo_ray.sections``; ``halo_ray.config.load_config`` reads YAML strictly.
"""

from __future__ import annotations

import os as _os

__version__ = "0.1.0"

# Imported straight from a source checkout (Ray's --working-dir copy, PYTHONPATH=.): `actors/` and
# `jobs/` sit beside this folder, where installs map them to halo_ray.actors and halo_ray.jobs
# (setuptools package-dir). Let the checkout's subpackages resolve there, so that an uploaded copy is
# a whole package; an installed wheel has them inside and is untouched. cluster/README.md says how to
# run an installed wheel instead of the uploaded code (cluster/runtime-env.yaml leaves halo_ray/ out).
_here = _os.path.dirname(_os.path.abspath(__file__))
_checkout = _os.path.dirname(_here)
if (not _os.path.isdir(_os.path.join(_here, "actors"))
        and _os.path.isfile(_os.path.join(_checkout, "actors", "__init__.py"))
        and _os.path.isfile(_os.path.join(_checkout, "pyproject.toml"))):
    __path__.append(_checkout)  # type: ignore[name-defined]  # noqa: F821

_DRIVER_NAMES = {"init", "generate", "benchmark", "shutdown", "RolloutGroup", "resolve_model", "verify"}
_JOB_NAMES = {"sft": "halo_ray.driver.sft", "raft": "halo_ray.driver.raft", "grpo": "halo_ray.driver.grpo",
              "dpo": "halo_ray.driver.dpo", "online_dpo": "halo_ray.driver.online_dpo", "demo": "halo_ray.driver.demo"}
# ``halo_ray.srl`` is the SRL package (traces, rewards, tasks): its job is ``halo_ray.srl.train(config)``.

__all__ = sorted(_DRIVER_NAMES | set(_JOB_NAMES)) + ["__version__"]


def __getattr__(name: str):
    if name in _DRIVER_NAMES:
        from halo_ray import driver

        return getattr(driver, name)
    if name in _JOB_NAMES:
        import importlib

        return getattr(importlib.import_module(_JOB_NAMES[name]), name)
    raise AttributeError(f"module 'halo_ray' has no attribute {name!r}")
