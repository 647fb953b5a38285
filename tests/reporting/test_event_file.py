import struct

import pytest
from tensorboard.backend.event_processing import event_file_loader
from tensorboard.compat.proto import event_pb2
from tensorboard.compat.tensorflow_stub import pywrap_tensorflow

from keras_trainopt.reporting import event_file


@pytest.mark.parametrize("data", [b"", b"a", b"hello world", bytes(range(256)) * 9])
def test_the_checksum_is_tensorboards(data):
    # TensorBoard's own pure-Python masked CRC-32C is the reference
    assert event_file.masked_crc32c(data) == pywrap_tensorflow.masked_crc32c(data)


def test_a_record_is_framed_as_tfrecord():
    data = b"an event"
    framed = event_file.record(data)
    (length,) = struct.unpack("<Q", framed[:8])
    assert length == len(data)
    assert framed[12:12 + length] == data
    assert len(framed) == 8 + 4 + length + 4


def test_tensorboards_reader_reads_every_event_back(tmp_path):
    writer = event_file.EventFile(str(tmp_path))
    for step in range(5):
        writer.add_event(event_pb2.Event(step=step, wall_time=float(step)))
    writer.close()
    assert writer.path.startswith(str(tmp_path / "events.out.tfevents."))
    # the loader checks each record's checksums
    events = list(event_file_loader.RawEventFileLoader(writer.path).Load())
    parsed = [event_pb2.Event.FromString(e) for e in events]
    assert parsed[0].file_version == "brain.Event:2"
    assert [e.step for e in parsed[1:]] == list(range(5))


def test_events_are_on_disk_after_flush(tmp_path):
    writer = event_file.EventFile(str(tmp_path))
    writer.add_event(event_pb2.Event(step=7))
    writer.flush()
    events = list(event_file_loader.RawEventFileLoader(writer.path).Load())
    assert event_pb2.Event.FromString(events[-1]).step == 7
    writer.close()


def test_two_files_of_one_process_never_share_a_name(tmp_path):
    files = [event_file.EventFile(str(tmp_path)) for _ in range(3)]
    for file in files:
        file.close()
    assert len({file.path for file in files}) == 3
    assert len(list(tmp_path.iterdir())) == 3
