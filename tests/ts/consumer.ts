// A TypeScript consumer of pkg/: every method of the JS API with its types, type-checked by
// `tsc --strict --noEmit` in tools/test.sh (never run). The `@ts-expect-error` lines prove that
// mistakes a user makes do not compile: if one of them compiled, tsc would fail on it.
import init, {
  Detector,
  Volume,
  blindSpot,
  choices,
  fitDefaults,
  fitSpec,
  isAnomalous,
  overlayDefaults,
  randomBackbone,
  receptiveField,
  renderOverlay,
  engineChannel,
  threadedBuild,
  scoresCsv,
  upsampleMap,
  verdict,
  sniffFile,
  checkFileSize,
  supportedFormats,
  decodePicture,
  dicomSeries,
  groupSeries,
  fileStem,
  outputNames,
  volumeRows,
  fingerprint,
  seriesFingerprint,
  marksToCsv,
  marksFromCsv,
  chooseThreshold,
  rocCurve,
  thresholdRates,
  learnDefaults,
  type Marked,
  type Choice,
  type Backend,
  type DeviceKind,
  type FileKind,
  type OutputNames,
  type RunItem,
  type BackboneInfo,
  type CreateOptions,
  type Embedding,
  type Explanation,
  type FitImage,
  type FitOptions,
  type FitProgress,
  type ModelInfo,
  type ScoreResult,
  type SliceImage,
  type SliceInfo,
  type VolumeResult,
} from "../../pkg/dino_ar.js";

export async function everything(weights: Uint8Array, config: string | undefined, normals: FitImage[], image: ImageData) {
  await init();
  const backend: Backend = "auto";
  const det: Detector = await Detector.create(backend);
  const where: string = det.backend;
  const runsOn: DeviceKind = det.device;
  const gpu: Detector = await Detector.create("gpu", { precision: "f16" });
  gpu.free();
  const limit: CreateOptions = { threads: 4 };
  const capped: Detector = await Detector.create("cpu", limit);
  const threads: number = capped.threads;
  const why: string | undefined = capped.threadsNote;
  const threaded: boolean = threadedBuild();
  new BroadcastChannel(engineChannel()).onmessage = ({ data }) => console.log(data.message, threads, why, threaded);
  capped.free();
  const info: BackboneInfo = await det.loadBackbone(weights, config);
  const width: number = info.hiddenSize;

  const controller = new AbortController();
  const options: FitOptions = { epochs: 40, size: 448, method: "ar", variant: "dilated", signal: controller.signal };
  const seen: number[] = [];
  const bundle: Uint8Array = await det.fit(normals, options, (p: FitProgress) => {
    // A discriminated union on `phase`.
    if (p.phase === "embed") seen.push(p.image / p.images);
    else seen.push(p.loss, p.epoch, p.step);
  });
  await det.fit(normals); // every option has a default
  await det.fit(normals, { size: [448, 224], holdout: 0.2, quantile: 0.99, hidden: 128, batchSize: 8, learningRate: 1e-3 });
  det.cancel();

  const model: ModelInfo = await det.loadModel(bundle);
  const epochs: number = model.spec.epochs;
  const r: ScoreResult = await det.score(image.data, image.width, image.height);
  const withMap: ScoreResult = await det.score(image.data, image.width, image.height, { map: true });
  const pixels: Float32Array | undefined = withMap.map;
  const judged: boolean = r.anomalous && isAnomalous(r.score, model.threshold);
  const said: "anomalous" | "normal" = verdict(r.score, r.threshold);
  const grid: Float32Array = r.grid;
  // A file's bytes, read by the library as the CLI reads them; fit takes files too.
  const fileBytes = new Uint8Array(64);
  checkFileSize("scan.nii", 2e9); // throws: past the library's limit, before a byte is read
  const kind: FileKind = sniffFile("photo.jpg", fileBytes);
  const fromFile: ScoreResult = await det.scoreFile(fileBytes, { map: true });
  const fileSeen: Explanation | null = await det.explainFile(fileBytes);
  const shown: SliceImage = decodePicture(fileBytes);
  await det.fit([{ bytes: fileBytes, name: "photo.jpg" }, { dicom: [fileBytes], names: ["a.dcm"] }]);
  const accept: string = supportedFormats().extensions.join(",");
  const uids: string[] = dicomSeries(["a.dcm"], [fileBytes]);
  const items: RunItem[] = groupSeries(["scans"], uids);
  const names: OutputNames = outputNames(fileStem("scans/case.nii.gz"), "axial", 3);
  const sliceFile: string | undefined = names.sliceOverlay;
  const kindOfError: unknown = await det.scoreFile(fileBytes).catch((e) => e.kind);
  const embedding: Embedding = await det.embedPixels(new Float32Array(3 * 224 * 224), 224, 224);
  const explained: Explanation | null = await det.explain(image.data, image.width, image.height);
  const picture: ImageData | undefined = explained
    ? new ImageData(new Uint8ClampedArray(explained.actual), explained.gridW, explained.gridH)
    : undefined;
  const field: Int32Array = receptiveField(model.spec);
  const unseen: Int32Array = blindSpot({ variant: "gated", layers: 5 });
  const randomWeights: Uint8Array = randomBackbone({ seed: 3, layers: 4 });

  const map: Float32Array = upsampleMap(r.grid, r.gridH, r.gridW, r.height, r.width);
  const style = overlayDefaults();
  const drawn: Uint8Array = renderOverlay(image.data, image.width, image.height, map, {
    threshold: model.threshold, displayLow: model.displayLow, displayHigh: model.displayHigh, opacity: style.opacity,
  });
  const csv: string = scoresCsv([{ file: "a.png", score: r.score, scoreTop1: r.scoreTop1, threshold: r.threshold }]);
  // Volumes: NIfTI bytes read once, cut by the model's window and plane, every slice scored.
  const volume = Volume.read(new Uint8Array(348));
  const anyVolume: Volume = Volume.readFile(new Uint8Array(348), "t1.nii");
  anyVolume.free();
  const series: Volume = Volume.readDicom([new Uint8Array(132), new Uint8Array(132)], ["a.dcm", "b.dcm"]);
  series.free();
  const dims: Uint32Array = volume.dims;
  const cut: SliceInfo = det.volumeSlices(volume);
  const slice: SliceImage = det.sliceImage(volume, cut.count - 1);
  const scored: VolumeResult = await det.scoreVolume(volume, (p) => console.log(`${p.slice}/${p.slices}`));
  const worst: ScoreResult = scored.slices[scored.worstSlice];
  const mapFile: Uint8Array = scored.anomalyMap;
  const sliceSeen: Explanation | null = await det.explainSlice(volume, scored.worstSlice);
  const volumeCsv: string = scoresCsv([{ file: "v.nii.gz", score: worst.score, threshold: scored.threshold, slice: 3 },
    { file: "v.nii.gz", score: scored.score, threshold: scored.threshold, worstSlice: scored.worstSlice, note: cut.warning }]);
  const rows = volumeRows("v.nii.gz", scored.slices, scored.worstSlice, scored.threshold, cut.notes);
  volume.free();
  const defaults = fitDefaults();
  const checked = fitSpec({ epochs: defaults.epochs * 2 });
  const menus: string[] = choices().method.map((c) => c.label);
  // The screening loop: keep embeddings, learn from marked normals, calibrate by a rule.
  det.keepEmbeddings();
  det.keepEmbeddings(16);
  const kept: number = det.keptEmbeddings.bytes;
  const learned: Uint8Array = await det.learn(normals, { ...learnDefaults(), signal: new AbortController().signal }, (p: FitProgress) => p.phase);
  await det.learn([{ bytes: fileBytes, name: "scan.nii.gz", slices: [3, 4] }]);
  const version: number = (await det.loadModel(learned)).version;
  const { model: calibrated, choice } = await det.calibrate({ normal: normals, anomalous: [{ bytes: fileBytes }], rule: "fpr:0.01" });
  const rate: number = choice.falseAlarmRate;
  const recall: number | null | undefined = choice.recall;
  const picked: Choice = chooseThreshold("f1", new Float32Array([0.1]), new Float32Array([0.9]));
  const curve: number[] = rocCurve(new Float32Array([0.1]), new Float32Array([0.9])).map((p) => p.recall);
  const at: number = thresholdRates(0.5, new Float32Array([0.1]), new Float32Array([0.9])).falseAlarmRate;
  const marks: Marked[] = marksFromCsv(marksToCsv([{ file: "a.png", slice: null, fingerprint: fingerprint(fileBytes), mark: "normal" }]));
  const seriesPrint: string = seriesFingerprint([fileBytes, fileBytes]);
  const history: string[] = (await det.loadModel(calibrated)).history.map((v) => `${v.step} ${v.images}`);
  det.free();

  // Mistakes that must not compile:
  // @ts-expect-error a misspelt option (`epochs`)
  await det.fit(normals, { epoch: 40 });
  // @ts-expect-error a backend that does not exist
  await Detector.create("tpu");
  // @ts-expect-error a thread count is a number
  await Detector.create("cpu", { threads: "4" });
  // @ts-expect-error a result field that does not exist (`scoreTop1`)
  const top: number = r.scoreTop;
  // @ts-expect-error a method name that is not a method
  await det.fit(normals, { method: "svm" });
  // @ts-expect-error progress reports of the embed phase have no loss
  await det.fit(normals, {}, (p) => p.phase === "embed" && p.loss);

  // @ts-expect-error a plane is a name, not a number
  const plane: number = cut.plane;
  // @ts-expect-error a mark is normal or anomalous
  marksToCsv([{ file: "a.png", slice: null, fingerprint: "0123456789abcdef", mark: "fine" }]);
  // @ts-expect-error calibrate needs a rule
  await det.calibrate({ normal: normals });

  return { where, width, seen, picture, field, randomWeights, epochs, pixels, judged, said, grid, embedding, drawn, csv, checked, menus, top,
    dims, slice, mapFile, sliceSeen, volumeCsv, plane, runsOn, kind, fromFile, fileSeen, shown, accept, items, sliceFile,
    kindOfError, rows, kept, version, rate, recall, picked, curve, at, marks, seriesPrint, history };
}
