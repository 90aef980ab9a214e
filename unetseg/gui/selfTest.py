"""The modules' self-test: a module's logic on a phantom with an untrained sample model.

``runSampleCase`` needs only MRML (it also runs on ``slicer-core``); ``runModuleSelfTest`` adds
what the Slicer app provides (event loop, scene, messages). The model is untrained: the test
checks plumbing (inputs, background job, segments, statistics, replacing), not accuracy.
"""

from __future__ import annotations

import tempfile
import unittest
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import slicer

from unetseg.gui.dependencies import missingPackages
from unetseg.gui.sampleModels import SampleModel
from unetseg.host.volumes import addVolumeFromArray

if TYPE_CHECKING:
    from unetseg.gui.modelCatalog import ModelFilter


def runSampleCase(
    testCase: unittest.TestCase,
    scene,
    logic,
    sample: SampleModel,
    folder: str,
    wait: Callable[[], None],
    omit: Sequence[str] = (),
    *,
    modelFilter: ModelFilter | None = None,
) -> Any:
    """Segment phantoms of ``sample``'s inputs (except the optional inputs in ``omit``) with
    ``logic.start`` as the panel does (background job, polled with ``wait``), check the
    result with ``testCase``'s assertions, then check re-running into the same node. With
    ``modelFilter``, first check that the written package is listed by it.

    Returns:
        The first run's ``SegmentationResult``.
    """
    from unetseg.host.segmentation import SegmentationExistsError

    model = sample.write(folder)
    if modelFilter is not None:
        testCase.assertTrue(
            modelFilter.accepts(model), f"{model.id} does not have {modelFilter.describe()}"
        )
    inputNodes = {}
    for seed, spec in enumerate(model.inputs):
        if spec.name in omit:
            testCase.assertFalse(spec.required, f"{spec.name} is required, it cannot be omitted")
            continue
        array, geometry = sample.phantom(seed)
        inputNodes[spec.name] = addVolumeFromArray(scene, array, geometry, f"{spec.name} phantom")

    job = logic.start(model, inputNodes)
    while not job.isDone():
        wait()
    done, total = job.progress
    testCase.assertGreater(total, 0)
    testCase.assertEqual(done, total)
    result = job.finish()

    labelNames = [label.name for label in model.labels]
    segmentation = result.segmentationNode.GetSegmentation()
    segmentNames = [
        segmentation.GetNthSegment(index).GetName()
        for index in range(segmentation.GetNumberOfSegments())
    ]
    testCase.assertEqual(segmentNames, labelNames)
    testCase.assertEqual([row["name"] for row in result.statistics["segments"]], labelNames)
    phantomMl = next(iter(inputNodes.values())).GetImageData().GetNumberOfPoints() * 1.5**3 / 1e3
    totalMl = sum(row["volume_ml"] for row in result.statistics["segments"])
    testCase.assertLessEqual(totalMl, phantomMl * (1 + 1e-6))
    testCase.assertEqual("lesions" in result.statistics, model.lesion_analysis)
    testCase.assertEqual(
        list(result.missingInputs), [i.name for i in model.inputs if i.name in omit]
    )
    testCase.assertGreater(result.timings["total"], 0.0)
    testCase.assertTrue(result.device)

    # Re-running into the same node replaces this model's segments and needs permission.
    node = result.segmentationNode
    with testCase.assertRaises(SegmentationExistsError):
        logic.run(model, inputNodes, outputSegmentationNode=node)
    again = logic.run(model, inputNodes, outputSegmentationNode=node, replaceModelSegments=True)
    testCase.assertIs(again.segmentationNode, node)
    testCase.assertEqual(segmentation.GetNumberOfSegments(), len(labelNames))
    return result


def runModuleSelfTest(testCase, logic, sample: SampleModel, omit: Sequence[str] = ()) -> None:
    """Self-test of a module in the Slicer app: ``sample`` must be listed by the module's model
    filter, and ``runSampleCase`` must pass on ``slicer.mrmlScene``. Skipped (with a message)
    when the Python packages the engine needs are not installed."""
    missing = missingPackages()
    if missing:
        testCase.delayDisplay(f"Skipped: Python packages not installed: {', '.join(missing)}")
        return
    testCase.delayDisplay(f"Segmenting a phantom with '{sample.title}' (untrained, plumbing only)")
    with tempfile.TemporaryDirectory() as folder:
        runSampleCase(
            testCase,
            slicer.mrmlScene,
            logic,
            sample,
            folder,
            slicer.app.processEvents,
            omit,
            modelFilter=logic.modelFilter,
        )
    testCase.delayDisplay("Test passed")
