"""Propagation, real-time form: the champion as a low-latency scorer, built and proven before it serves.

After D's batch scores, ``realtime_scorer`` converts the champion in force to ONNX (or keeps its skops file when it
does not convert, said in the metadata), writes a conformance test with a sample of D's rows and their batch scores,
runs it against the built scorer served over HTTP, and publishes the scorer to ``<registry>/scorers/v<N>/`` only
when it passed: the scoring service (``refresh-assets scorer``) then swaps to it. A scorer that fails stays in its
output folder for inspection, unpublished, and the step fails: the service keeps the previous champion.
"""

import dagster as dg

from refresh_assets.assets.population import POPULATION, POPULATION_FILE
from refresh_assets.assets.scoring import SCORES
from refresh_assets.audit import StepAudit, output_metadata, read_input
from refresh_assets.config import RealtimeConfig
from refresh_assets.partitions import daily_partitions
from refresh_assets.resources import ArtifactStore, Registry
from refresh_assets.retries import retry_only_transient

REALTIME = "realtime_scorer"


@dg.asset(
    name=REALTIME,
    partitions_def=daily_partitions,
    deps=[POPULATION, SCORES],
    group_name="propagation",
    kinds={"onnx"},
    description="The champion in force as a real-time scorer (ONNX, else skops), its parity with sklearn and a "
                "generated conformance test over HTTP; published for `refresh-assets scorer` only when it passed.",
)
@retry_only_transient
def realtime_scorer(context: dg.AssetExecutionContext, config: RealtimeConfig, artifacts: ArtifactStore,
                    registry: Registry) -> dg.MaterializeResult:
    from refresh_assets.core.object_store import read_output_parquet
    from refresh_assets.serving import build

    audit = StepAudit(context, REALTIME, config)
    if not config.enabled:
        audit.log("real-time scoring is off (REFRESH_ASSETS_REALTIME=off or enabled: false): nothing built or "
                  "published; the scoring service keeps what it serves", "warning")
        return dg.MaterializeResult(metadata={"enabled": False, "deployable": False})
    store = artifacts.store()
    data_dir, data_manifest = read_input(audit, store, POPULATION)
    scores_dir, scores_manifest = read_input(audit, store, SCORES)
    models = registry.registry()
    champion = models.current_champion()
    if champion is None or scores_manifest.get("champion_version") != champion.version:
        raise dg.Failure(description=f"{SCORES} of {audit.partition_key} were scored with "
                                     f"v{scores_manifest.get('champion_version')}, the champion in force is "
                                     f"{'none' if champion is None else f'v{champion.version}'}: re-run "
                                     "propagation_job for this day", allow_retries=False)
    batch = read_output_parquet(data_dir, POPULATION_FILE, data_manifest)
    scores = read_output_parquet(scores_dir, "scores.parquet", scores_manifest)
    pipeline = models.load_model(champion.version)  # sha256-checked
    settings = build.ConformanceSettings(sample_rows=config.sample_rows, latency_requests=config.latency_requests,
                                         p99_ms=config.p99_ms)
    with store.stage(REALTIME, audit.partition_key, audit.run_id) as out:
        with audit.timed("build"):
            record = build.build_artifact(out.path, pipeline, batch, scores, {
                "version": champion.version, "algorithm": champion.algorithm, "model_sha256": champion.model_sha256,
                "model_path": champion.model_path, "partition": audit.partition_key}, settings, config.top_k_share)
        parity = record["parity"]
        audit.log(f"v{champion.version} ({champion.algorithm}) as {record['runtime']}: max |served - sklearn| "
                  f"{parity.get('max_abs_diff')}, same top-k {parity.get('same_top_k')}"
                  + (f"; fallback: {record['fallback_reason']}" if record["fallback_reason"] else ""),
                  "info" if record["runtime"] == "onnx" else "warning")
        with audit.timed("conformance"):
            result = build.run_conformance(out.path, settings.timeout_seconds)
        audit.log(f"conformance over HTTP: {'passed' if result.passed else 'FAILED'} in {result.seconds:.1f}s "
                  f"{result.summary}", "info" if result.passed else "error")
        if result.passed:  # from the local staging folder (the outputs may be on an object store), before commit
            published = build.publish(out.path, models.root, champion.version)
        final = audit.commit(out, {"scorer": record, "conformance": {"passed": result.passed, **result.summary}})
    if not result.passed:
        raise dg.Failure(
            description=f"the real-time scorer of v{champion.version} failed its conformance test (kept unpublished "
                        f"in {final}; the scoring service keeps the previous champion): {result.summary or ''} "
                        + (result.output.strip().splitlines() or [""])[-1],
            allow_retries=False, metadata=output_metadata(final))
    audit.context.log.info(f"v{champion.version} published for the scoring service at {published}")
    return dg.MaterializeResult(metadata={
        **output_metadata(final), "champion_version": champion.version, "runtime": record["runtime"],
        "fallback_reason": record["fallback_reason"] or "", "max_abs_diff": float(parity.get("max_abs_diff", -1.0)),
        "same_top_k": bool(parity.get("same_top_k", False)), "p50_ms": float(result.summary.get("p50_ms", -1.0)),
        "p99_ms": float(result.summary.get("p99_ms", -1.0)), "deployable": True,
        "published": dg.MetadataValue.path(str(published)),
    })
