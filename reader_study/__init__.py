"""Blinded radiologist reader studies: build (:mod:`xreal_bench.reader_study.builder`), store
(:mod:`xreal_bench.reader_study.storage`), serve (:mod:`xreal_bench.reader_study.app`) and analyse
(:mod:`xreal_bench.reader_study.analysis`).

The demo and scripts call :func:`create_study` and :func:`add_reader` (imported lazily so the
CLI's ``--help`` stays fast)."""

__all__ = ["ReaderLink", "StudyCreated", "add_reader", "create_study"]


def __getattr__(name: str):
    if name in __all__:
        from xreal_bench.reader_study import builder

        return getattr(builder, name)
    raise AttributeError(f"module 'xreal_bench.reader_study' has no attribute {name!r}")
