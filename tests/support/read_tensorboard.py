"""read_tensorboard.py FOLDER OUT_JSON: reads a folder of TensorBoard event
files with the real `tensorboard` package and writes what it found as JSON
(the C++ tests compare it with what they wrote; the loader's own warnings go
to stderr):

  records: every record of every events file in name order (TensorBoard's
           reading order): file, the Event's kind, step, and whether
           protobuf's own serialization of the parsed Event equals the
           record's bytes (our hand encoding is the canonical one). A record
           whose length or data CRC does not match raises DataLossError here.
  scalars: {tag: [[step, value], ...]} as event_accumulator.EventAccumulator
           (the loader behind TensorBoard's Python data provider) returns
           them after Reload(), every event kept (size_guidance 0).
"""
import glob
import json
import os
import sys

from tensorboard.backend.event_processing import event_accumulator
from tensorboard.compat.proto import event_pb2
from tensorboard.compat.tensorflow_stub import errors, pywrap_tensorflow

folder, out = sys.argv[1], sys.argv[2]
records = []
for path in sorted(glob.glob(os.path.join(folder, "events.out.tfevents.*"))):
    reader = pywrap_tensorflow.PyRecordReader_New(path)
    while True:
        try:
            reader.GetNext()
        except errors.OutOfRangeError:
            break
        data = reader.record()
        event = event_pb2.Event.FromString(data)
        records.append({
            "file": os.path.basename(path),
            "what": event.WhichOneof("what"),
            "step": event.step,
            "file_version": event.file_version,
            "session_status": event.session_log.status,
            "canonical": event.SerializeToString() == data,
        })

accumulator = event_accumulator.EventAccumulator(folder, size_guidance={event_accumulator.SCALARS: 0})
accumulator.Reload()
scalars = {tag: [[e.step, e.value] for e in accumulator.Scalars(tag)]
           for tag in accumulator.Tags()[event_accumulator.SCALARS]}
with open(out, "w") as f:
    json.dump({"records": records, "scalars": scalars}, f)
