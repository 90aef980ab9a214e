"""Study picker on Slicer's DICOM database: load the series a model needs from one study.

The dialog lists the studies of ``slicer.dicomDatabase``; for the selected study it shows which
series would feed which model input (``seriesMatching.matchStudySeries``, on SeriesDescription)
and, on OK, loads only those series with ``DICOMUtils.loadSeriesByUID``.
"""

from __future__ import annotations

import html
from typing import Any

import qt
import slicer
from slicer.i18n import tr as _

from unetseg.engine.matching import MatchResult
from unetseg.gui.seriesMatching import SeriesInfo, matchStudySeries
from unetseg.host.volumes import SERIES_DESCRIPTION_ATTRIBUTE


def studySeries(database, studyUID: str) -> list[SeriesInfo]:
    """The series of a study, as listed by a ``ctkDICOMDatabase``."""
    return [
        SeriesInfo(
            uid=uid,
            description=database.fieldForSeries("SeriesDescription", uid),
            modality=database.fieldForSeries("Modality", uid),
            number=database.fieldForSeries("SeriesNumber", uid),
        )
        for uid in database.seriesForStudy(studyUID)
    ]


class StudyPickerDialog:
    """Modal dialog: one row per study (patient, date, description, number of series), a
    preview of the input assignment, OK enabled when every required input has a series."""

    def __init__(self, database, model, parent=None) -> None:
        self.database = database
        self.model = model
        self.match: MatchResult | None = None
        self.dialog = qt.QDialog(parent)
        self.dialog.setWindowTitle(_("Load inputs from the DICOM database"))
        self.dialog.resize(720, 420)
        layout = qt.QVBoxLayout(self.dialog)
        self.studyTree = qt.QTreeWidget()
        self.studyTree.setHeaderLabels([_("Patient"), _("Date"), _("Study"), _("Series")])
        self.studyTree.setRootIsDecorated(False)
        self.studyTree.setSelectionMode(qt.QAbstractItemView.SingleSelection)
        layout.addWidget(self.studyTree)
        self.previewLabel = qt.QLabel(_("Select a study."))
        self.previewLabel.setWordWrap(True)
        layout.addWidget(self.previewLabel)
        self.buttons = qt.QDialogButtonBox(qt.QDialogButtonBox.Ok | qt.QDialogButtonBox.Cancel)
        self.buttons.accepted.connect(self.dialog.accept)
        self.buttons.rejected.connect(self.dialog.reject)
        layout.addWidget(self.buttons)
        self._fillStudies()
        self.studyTree.itemSelectionChanged.connect(self._onStudySelected)
        self.studyTree.itemDoubleClicked.connect(self._onStudyDoubleClicked)
        self._onStudySelected()

    def _fillStudies(self) -> None:
        db = self.database
        for patient in db.patients():
            patientName = db.fieldForPatient("PatientsName", patient).replace("^", " ").strip()
            for study in db.studiesForPatient(patient):
                item = qt.QTreeWidgetItem(
                    [
                        patientName,
                        db.fieldForStudy("StudyDate", study),
                        db.fieldForStudy("StudyDescription", study),
                        str(len(db.seriesForStudy(study))),
                    ]
                )
                item.setData(0, qt.Qt.UserRole, study)
                self.studyTree.addTopLevelItem(item)
        for column in range(self.studyTree.columnCount):
            self.studyTree.resizeColumnToContents(column)

    def _onStudySelected(self) -> None:
        items = self.studyTree.selectedItems()
        self.match = None
        if items:
            series = studySeries(self.database, items[0].data(0, qt.Qt.UserRole))
            self.match = matchStudySeries(series, self.model.inputs, self.model.modality)
            self.previewLabel.setText(self._previewHtml(self.match))
        ok = self.match is not None and not self.match.missing_required
        self.buttons.button(qt.QDialogButtonBox.Ok).setEnabled(ok)

    def _onStudyDoubleClicked(self, item, column) -> None:
        if self.buttons.button(qt.QDialogButtonBox.Ok).enabled:
            self.dialog.accept()

    def _previewHtml(self, match: MatchResult) -> str:
        rows = []
        for spec in self.model.inputs:
            info = match.assigned.get(spec.name)
            if info is not None:
                source = html.escape(info.label())
            elif spec.required:
                source = "<span style='color:#c00'>" + _("no matching series") + "</span>"
            else:
                source = _("none (optional)")
            rows.append(f"<b>{html.escape(spec.title)}</b>: {source}")
        return "<br>".join(rows)

    def exec(self) -> MatchResult | None:
        """Show the dialog; the chosen study's assignment, or None if cancelled."""
        return self.match if self.dialog.exec_() == qt.QDialog.Accepted else None


def loadMatchedSeries(match: MatchResult) -> dict[str, Any]:
    """Load each assigned series; input name -> its first scalar volume node. The node gets the
    ``DICOM.SeriesDescription`` attribute so that later auto-fills recognise it."""
    from DICOMLib import DICOMUtils

    nodes = {}
    for inputName, info in match.assigned.items():
        loaded = [slicer.mrmlScene.GetNodeByID(i) for i in DICOMUtils.loadSeriesByUID([info.uid])]
        volumes = [n for n in loaded if n is not None and n.IsA("vtkMRMLScalarVolumeNode")]
        if not volumes:
            raise RuntimeError(
                _("Series '{series}' could not be loaded as a volume.").format(series=info.label())
            )
        volumes[0].SetAttribute(SERIES_DESCRIPTION_ATTRIBUTE, info.description)
        nodes[inputName] = volumes[0]
    return nodes


def pickStudyAndLoad(model, parent=None) -> dict[str, Any] | None:
    """Let the user pick a study for ``model`` and load its matching series.

    Returns:
        Input name -> volume node for the assigned inputs, or None if the database is empty
        or the user cancelled.
    """
    database = slicer.dicomDatabase
    if database is None or not database.isOpen or not database.patients():
        slicer.util.infoDisplay(
            _("The DICOM database is empty. Import DICOM files in the DICOM module first.")
        )
        return None
    match = StudyPickerDialog(database, model, parent).exec()
    if match is None:
        return None
    with slicer.util.WaitCursor():
        return loadMatchedSeries(match)
