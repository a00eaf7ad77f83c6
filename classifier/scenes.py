"""Tag a whole scene with the recognition model: every tile of a raster read in strips
(imagery.rasters), one forward pass per ``batch_size`` tiles, and the results as GeoJSON
and a per-label probability raster (``python -m classifier predict-scene``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imagery.partial import DEFAULT_VIEW, model_view
from imagery.rasters import (
    SceneReader,
    Tile,
    TileGrid,
    TilingConfig,
    feature_collection,
    probability_raster,
    tile_feature,
)


@dataclass
class TileResult:
    tile: Tile
    bounds: tuple[float, float, float, float]
    ring: list[list[float]] | None
    probabilities: dict[str, float]
    tags: list[str]


@dataclass
class ScenePrediction:
    """Every tagged tile of a scene, and what the raster and GeoJSON exports need."""

    grid: TileGrid
    labels: list[str]
    transform: Any
    crs: Any
    tiles: list[TileResult]
    skipped: int  # all-nodata tiles

    def geojson(self) -> dict:
        features = [tile_feature(t.ring, {
            "image": None, "row": t.tile.row, "col": t.tile.col, "tags": t.tags,
            "labels": t.tags, "probabilities": t.probabilities, "bounds": list(t.bounds),
        }) for t in self.tiles]
        return feature_collection(features, skipped_nodata_tiles=self.skipped)

    def probability_cube(self) -> np.ndarray:
        values = np.full((len(self.labels), self.grid.rows, self.grid.cols), np.nan, np.float32)
        for t in self.tiles:
            values[:, t.tile.row, t.tile.col] = [t.probabilities[name] for name in self.labels]
        return values

    def write_raster(self, destination: str | Path) -> None:
        probability_raster(self.grid, self.probability_cube(), self.transform, self.crs,
                           self.labels, destination)


def predict_scene(source: str | Path, predictor, config: TilingConfig = TilingConfig(),
                  batch_size: int = 64, progress=None,
                  partial_view: str = DEFAULT_VIEW) -> ScenePrediction:
    """Tile a scene and tag every tile with ``predictor`` (classifier.predictor), one
    strip of tile rows at a time; ``progress(n)`` is called with tiles done per strip. A
    partial tile is seen as ``partial_view`` says (imagery.partial)."""
    results: list[TileResult] = []
    skipped = 0
    with SceneReader(source, config) as scene:
        pending: list[tuple[Tile, np.ndarray]] = []

        def flush() -> None:
            tiles = [tile for tile, _chip in pending]
            outputs = predictor.predict([chip for _tile, chip in pending])
            rings = scene.tile_polygons_wgs84(tiles) or [None] * len(tiles)
            for tile, ring, output in zip(tiles, rings, outputs):
                results.append(TileResult(tile, scene.tile_bounds(tile), ring,
                                          output.probabilities, output.tags))
            if progress is not None:
                progress(len(tiles))
            pending.clear()

        for _row, strip in scene.strips():
            for chip in strip:
                if chip.pixels is None:
                    skipped += 1
                    if progress is not None:
                        progress(1)
                else:
                    pending.append((chip.tile, model_view(chip.pixels, chip.window,
                                                          partial_view)))
            if len(pending) >= batch_size:
                flush()
        if pending:
            flush()
        return ScenePrediction(scene.grid, list(predictor.labels), scene.transform,
                               scene.crs, results, skipped)
