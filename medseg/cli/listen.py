"""``medseg listen PIPELINE -o OUT``: a DICOM node that segments every series it receives.

A storage SCP (127.0.0.1:11112 unless told otherwise) writes what it receives under
``OUT/.incoming``; each series that stays quiet for ``--settle`` seconds runs through the batch
engine like ``medseg predict`` (outputs, provenance, report in OUT) and its DICOM outputs are sent
on with ``--send``. Ctrl-C or SIGTERM finish the current case and stop; received series that were
not processed yet are picked up by the next start.
"""

from __future__ import annotations

from pathlib import Path

import typer

from medseg.cli.main import app
from medseg.cli.predict import EXPORT_HELP
from medseg.errors import ConfigError


@app.command()
def listen(
    target: Path = typer.Argument(..., help="Pipeline file (YAML), checkpoint, model package or model name."),
    output: Path = typer.Option(..., "-o", "--output", help="Output folder (also holds the received series)."),
    port: int = typer.Option(11112, "--port", help="TCP port to listen on."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0: every interface)."),
    ae: str = typer.Option("MEDSEG", "--ae", help="This node's AE title (also the calling AE title for --send)."),
    allow: list[str] = typer.Option(
        None, "--allow", help="Calling AE titles accepted, comma-separated or repeated (default: any)."
    ),
    settle: float = typer.Option(10.0, "--settle", help="A series is complete after this many quiet seconds."),
    export: list[str] = typer.Option(None, "--export", "-e", help=EXPORT_HELP),
    send: str = typer.Option(
        None, "--send", help="Store DICOM outputs in this archive (dicomweb+http(s):// or dimse://)."
    ),
    checkpoint: list[Path] = typer.Option(None, "--checkpoint", "-c", help="Checkpoint(s); several = fold ensemble."),
    device: str = typer.Option("auto", "--device", "-d", help="auto, cpu, cuda, cuda:1, mps."),
    tls_cert: Path = typer.Option(None, "--tls-cert", help="TLS: this node's certificate (PEM)."),
    tls_key: Path = typer.Option(None, "--tls-key", help="TLS: its private key (PEM)."),
    tls_ca: Path = typer.Option(None, "--tls-ca", help="TLS: CA certificates; callers must present one it signed."),
) -> None:
    """Receive DICOM series (C-STORE), segment each complete one with the pipeline, send the results on."""
    from medseg.archive.client import connect
    from medseg.archive.listen import Listener, ListenerConfig
    from medseg.archive.tls import tls_context
    from medseg.archive.urls import check_ae_title, parse_archive_url
    from medseg.cli.predict import check_writable, load_pipeline_and_checkpoints, split_list
    from medseg.core.device import resolve_device
    from medseg.pipeline.processor import PipelineProcessor

    if not 0 < port < 65536:
        raise ConfigError(f"--port must be 1-65535, got {port}")
    if not settle > 0:
        raise ConfigError(f"--settle must be a positive number of seconds, got {settle}")
    title = check_ae_title(ae)
    allowed = [check_ae_title(a, option="--allow") for a in split_list(allow) or []] or None
    target_url = parse_archive_url(send, option="--send") if send else None
    server_tls = tls_context(tls_cert, tls_key, tls_ca, server=True)
    client_tls = (
        tls_context(None, None, tls_ca, server=False) if target_url and target_url.protocol == "dimse" else None
    )
    if device != "auto":
        resolve_device(device, option="--device")
    pipeline, ckpts = load_pipeline_and_checkpoints(target, checkpoint)
    processor = PipelineProcessor(pipeline, ckpts, device=device, exporters=split_list(export))
    if target_url is not None and not any(e.name in ("dicom_seg", "rtstruct") for e in processor.export_specs()):
        raise ConfigError(
            f"--send {target_url.display()} stores DICOM outputs, but no DICOM exporter is selected; add -e dicom-seg "
            "or -e rtstruct"
        )
    check_writable(output)
    processor.predictor  # noqa: B018  (load the networks now: checkpoint problems stop before listening)
    sender = connect(target_url, ae_title=title, tls=client_tls) if target_url else None

    def on_case(row) -> None:  # type: ignore[no-untyped-def]
        line = f"{row.case_id}: {row.status} ({row.seconds:.1f} s)" + (f" {row.error}" if row.error else "")
        typer.secho(line, fg=typer.colors.RED if row.status == "failed" else None, err=True)

    config = ListenerConfig(
        host=host, port=port, ae_title=title, allow=allowed, settle_s=settle, ssl_context=server_tls
    )
    listener = Listener(config, processor, output, send=sender, on_case=on_case)
    with listener.handling_signals():  # from before the port opens: an early SIGTERM still stops cleanly
        try:
            listener.start()
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {host}:{port} ({exc.strerror or exc}); choose another --port or stop what uses it"
            ) from None
        typer.echo(
            f"listening as {title} on {host}:{port}{' (TLS)' if server_tls else ''}"
            f"{'; accepting ' + ', '.join(allowed) if allowed else ''}; results in {output}"
            f"{' and ' + target_url.display() if target_url else ''}; Ctrl-C stops",
            err=True,
        )
        listener.serve()
    failed = sum(r.status == "failed" for r in listener.rows)
    typer.echo(f"stopped ({listener.stopped_by}): {len(listener.rows)} series processed, {failed} failed", err=True)
    raise typer.Exit(0)
