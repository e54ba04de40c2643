"""Calibration for INT8: image sources, Ultralytics-identical preprocessing, recipes as data."""

from edgeprune.calibration.recipes import CalibrationRecipe, load_recipe, recipe_names
from edgeprune.calibration.sources import CalibrationData, sample, source_images

__all__ = ["CalibrationData", "CalibrationRecipe", "load_recipe", "recipe_names", "sample", "source_images"]
