"""The archive options of ``medseg predict`` (``-i URL``, ``--send``, ``--filter``, ``--ae``, TLS), checked up front."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from medseg.errors import ConfigError

if TYPE_CHECKING:
    import ssl

    from medseg.archive.fetch import SeriesPrefetch
    from medseg.archive.urls import ArchiveURL
    from medseg.batch import BatchReport, CaseList
    from medseg.export import Exporter


@dataclass
class ArchiveOptions:
    """What the archive options of a predict run asked for, parsed and checked."""

    source: ArchiveURL | None
    send: ArchiveURL | None
    study: dict[str, str]
    series: dict[str, str]
    ae_title: str
    tls: ssl.SSLContext | None

    @classmethod
    def check(
        cls,
        input: str,
        send: str | None,
        filters: list[str] | None,
        study: str | None,
        series: str | None,
        ae: str,
        tls_files: tuple[Path | None, Path | None, Path | None],
    ) -> ArchiveOptions:
        """Parse and check every archive option (nothing is contacted yet).

        Raises:
            ConfigError: a malformed URL or filter, an archive option without an archive, a bad AE title
                or unusable TLS files.
        """
        from medseg.archive.client import split_filters
        from medseg.archive.tls import tls_context
        from medseg.archive.urls import check_ae_title, is_archive_url, parse_archive_url

        source = parse_archive_url(input, option="-i") if is_archive_url(input) else None
        target = parse_archive_url(send, option="--send") if send else None
        if source is None and (filters or study):
            raise ConfigError(
                f"--filter/--study select series of an archive, but -i {input} is not one; give -i "
                "dicomweb+http://HOST:PORT/PATH or dimse://AET@HOST:PORT, or drop these options"
            )
        study_f, series_f = split_filters(filters or [], study_uid=study, series_uid=series if source else None)
        uses_dimse = any(u is not None and u.protocol == "dimse" for u in (source, target))
        if any(tls_files) and not uses_dimse:
            raise ConfigError("--tls-cert/--tls-key/--tls-ca are for dimse:// archives; DICOMweb uses https:// URLs")
        return cls(source, target, study_f, series_f, check_ae_title(ae), tls_context(*tls_files, server=False))

    def check_exports(self, exporters: list[Exporter]) -> None:
        """``--send`` needs a DICOM output to send.

        Raises:
            ConfigError: no dicom-seg/rtstruct exporter is selected.
        """
        if self.send is not None and not any(e.name in ("dicom_seg", "rtstruct") for e in exporters):
            raise ConfigError(
                f"--send {self.send.display()} stores DICOM outputs, but no DICOM exporter is selected; add "
                "-e dicom-seg or -e rtstruct"
            )

    def fetch(
        self, cache: Path, case_ids: str, *, prefetch: bool, part: tuple[int, int] = (0, 1)
    ) -> tuple[CaseList, SeriesPrefetch | None]:
        """The archive's matching series as cases, in ``cache``.

        With ``prefetch`` (cases named by SeriesInstanceUID, not Dask) the series are fetched in the
        background while earlier cases run (wrap the processor in ``FetchingProcessor``); otherwise
        every series is fetched before returning.
        """
        from medseg.archive.client import connect
        from medseg.archive.fetch import archive_cases, prefetch_cases
        from medseg.batch.cases import CASE_ID_RULES

        if case_ids not in CASE_ID_RULES:
            raise ConfigError(f"--case-ids must be one of {', '.join(CASE_ID_RULES)}, got {case_ids!r}")
        if self.source is None:
            raise ConfigError("-i: not an archive address")
        archive = connect(self.source, ae_title=self.ae_title, tls=self.tls)
        if prefetch and case_ids == "folder":
            cases, fetcher = prefetch_cases(archive, cache, study=self.study, series=self.series, part=part)
            typer.echo(
                f"{self.source.display()}: {len(cases)} image series (fetched while earlier ones run), "
                f"{len(cases.skipped)} not images",
                err=True,
            )
            return cases, fetcher
        cases = archive_cases(archive, cache, study=self.study, series=self.series, case_ids=case_ids)
        typer.echo(
            f"{self.source.display()}: {len(cases)} image series fetched, {len(cases.skipped)} not images, "
            f"{len(cases.failed)} incomplete or failed",
            err=True,
        )
        return cases, None

    def send_results(self, report: BatchReport, output: Path, num_parts: int, part_id: int) -> BatchReport:
        """Send the DICOM outputs of every finished case; failed sends become failed rows; rewrite the report."""
        from medseg.archive.client import connect
        from medseg.archive.send import send_results

        if self.send is None:
            raise ConfigError("--send: no archive address given")
        archive = connect(self.send, ae_title=self.ae_title, tls=self.tls)
        report = send_results(report, archive, output.absolute())
        report.write(output, "report" if num_parts == 1 else f"report.part{part_id}of{num_parts}")
        return report
