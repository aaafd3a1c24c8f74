"""The live page of `run --ui` / `serve --ui`: per source the newest frame with its heat map, score
against threshold, counts, fps, histogram and drift; the review queue; the threshold what-if and
Apply. Needs the ``ui`` extra (Starlette, uvicorn); imported only when a page is asked for."""
