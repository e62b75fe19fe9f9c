// The files a person picks → the items of a run, by the library's rules: what a file holds (its
// content, not its name), which DICOM files form one series, and what the run's outputs are
// called. The same rules as `dino-ar` (src/input.rs, src/scores_csv.rs); nothing here decides by
// a file's extension.
import { dino } from "./library.js";

// Enough of a file's start for the library to tell what it holds.
const HEAD = 352;

// A picked file's name: the path inside a picked folder where the browser gives it.
export const pathOf = (file) => file.webkitRelativePath || file.name;
const folderOf = (file) => pathOf(file).split("/").slice(0, -1).join("/");

// Each file → { file, kind } ("picture" | "nifti" | "dicom"), or { file, error } saying what it
// seems to be and what is read — or that it is too large, from its size before a byte is read.
async function sniff(file) {
  try {
    dino.checkFileSize(file.name, file.size);
    return { file, kind: dino.sniffFile(file.name, new Uint8Array(await file.slice(0, HEAD).arrayBuffer())) };
  } catch (e) {
    return { file, error: `${file.name}: ${e.message}` };
  }
}

// Files → the items of a run, in order: { name, stem, kind, file } for a file, { name, stem,
// kind: "dicom", series: File[] } for the DICOM files of one series in one folder (one volume,
// in the place of its first file), and { name, file, error } for a file that is not read.
export async function items(files) {
  const sniffed = await Promise.all([...files].map(sniff));
  const dicom = sniffed.filter((s) => s.kind === "dicom");
  const uids = new Map();
  if (dicom.length) {
    const bytes = await Promise.all(dicom.map(async (s) => new Uint8Array(await s.file.arrayBuffer())));
    dino.dicomSeries(dicom.map((s) => s.file.name), bytes).forEach((uid, k) => uids.set(dicom[k], uid));
  }
  const groups = dino.groupSeries(sniffed.map((s) => folderOf(s.file)), sniffed.map((s) => uids.get(s) ?? ""));
  return groups.map(({ files: [first, ...more], name, stem }) => {
    const s = sniffed[first];
    if (name) return { name, stem, kind: "dicom", series: [s.file, ...more.map((k) => sniffed[k].file)] };
    return { name: pathOf(s.file), stem: dino.fileStem(s.file.name), ...s };
  });
}

// What the library reads, for people and for the pickers.
export const formats = () => dino.supportedFormats();
