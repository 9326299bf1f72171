"""The goldenimage.io/v1alpha1 API: typed models that are the schema of the CRDs."""

from .goldenimage import GoldenImageSpec, GoldenImageStatus, Target
from .group import API_VERSION, GROUP, VERSION
from .imagebuild import ImageBuildSpec, ImageBuildStatus
from .imagechannel import ImageChannelSpec, ImageChannelStatus
from .resources import RESOURCES, GoldenImage, ImageBuild, ImageChannel

__all__ = [
    "API_VERSION",
    "GROUP",
    "RESOURCES",
    "VERSION",
    "GoldenImage",
    "GoldenImageSpec",
    "GoldenImageStatus",
    "ImageBuild",
    "ImageBuildSpec",
    "ImageBuildStatus",
    "ImageChannel",
    "ImageChannelSpec",
    "ImageChannelStatus",
    "Target",
]
