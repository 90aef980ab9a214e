"""The parameter node shared by the UNetSeg modules (one node per module, saved with the scene).

Every field is bound to a widget of ``Resources/UI/SegmentationPanel.ui`` through the widget's
``SlicerParameterName`` dynamic property, except those in ``INTERNAL_PARAMETERS``.
"""

from typing import Annotated

from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper

from unetseg.engine.options import BACKENDS, DEVICES, MAX_OVERLAP, PRECISIONS, SegmentOptions

#: Number of input selectors in the panel; models with more inputs are not offered.
INPUT_SLOTS = 4

#: Fields set by code rather than bound to a widget: ``modelId`` follows the model combo box,
#: whose items (bundled and user models) are only known at run time, while the parameter node
#: binds a combo box only to a fixed ``Choice``.
INTERNAL_PARAMETERS = ("modelId",)


@parameterNodeWrapper
class SegmentationParameterNode:
    """
    modelId: id of the selected model package (highest installed version is used).
    device, backend, overlap, fast, precision, uncertainty: the run's ``SegmentOptions``
        (overlap is set to the model's default when a model is chosen).
    input0, input1, input2, input3: volumes for the model's inputs, in manifest order; slots
        beyond the model's inputs are hidden and empty.
    outputSegmentation: segmentation to write into; None creates a new one.
    replaceExisting: allow replacing this model's segments in ``outputSegmentation``.
    """

    modelId: str = ""
    device: Annotated[str, Choice(list(DEVICES))] = "auto"
    backend: Annotated[str, Choice(list(BACKENDS))] = "auto"
    overlap: Annotated[float, WithinRange(0.0, MAX_OVERLAP)] = 0.5
    fast: bool = False
    precision: Annotated[str, Choice(list(PRECISIONS))] = "auto"
    uncertainty: bool = False
    input0: vtkMRMLScalarVolumeNode
    input1: vtkMRMLScalarVolumeNode
    input2: vtkMRMLScalarVolumeNode
    input3: vtkMRMLScalarVolumeNode
    outputSegmentation: vtkMRMLSegmentationNode
    replaceExisting: bool = False


def segmentOptions(parameters: SegmentationParameterNode) -> SegmentOptions:
    """The run's options as set in the panel (the fields named after ``SegmentOptions``'s)."""
    return SegmentOptions.from_attributes(parameters)
