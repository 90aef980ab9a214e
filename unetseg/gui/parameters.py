"""The parameter node shared by the UNetSeg modules (one node per module, saved with the scene).

Every field is bound to a widget of ``Resources/UI/SegmentationPanel.ui`` through the widget's
``SlicerParameterName`` dynamic property, except those in ``INTERNAL_PARAMETERS``.
"""

from typing import Annotated

from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper

#: Number of input selectors in the panel; models with more inputs are not offered.
INPUT_SLOTS = 4

#: Device names understood by the engine ("cuda" = first GPU).
DEVICES = ("auto", "cpu", "cuda")

#: Fields set by code rather than bound to a widget: ``modelId`` follows the model combo box,
#: whose items (bundled and user models) are only known at run time, while the parameter node
#: binds a combo box only to a fixed ``Choice``.
INTERNAL_PARAMETERS = ("modelId",)


@parameterNodeWrapper
class SegmentationParameterNode:
    """
    modelId: id of the selected model package (highest installed version is used).
    device: "auto" (GPU when usable), "cpu" or "cuda".
    overlap: sliding-window overlap; set to the model's default when a model is chosen.
    fast: approximate but faster inference (fewest windows covering the body/head box, CPU
        bfloat16).
    input0, input1, input2, input3: volumes for the model's inputs, in manifest order; slots
        beyond the model's inputs are hidden and empty.
    outputSegmentation: segmentation to write into; None creates a new one.
    replaceExisting: allow replacing this model's segments in ``outputSegmentation``.
    """

    modelId: str = ""
    device: Annotated[str, Choice(list(DEVICES))] = "auto"
    overlap: Annotated[float, WithinRange(0.0, 0.95)] = 0.5
    fast: bool = False
    input0: vtkMRMLScalarVolumeNode
    input1: vtkMRMLScalarVolumeNode
    input2: vtkMRMLScalarVolumeNode
    input3: vtkMRMLScalarVolumeNode
    outputSegmentation: vtkMRMLSegmentationNode
    replaceExisting: bool = False
