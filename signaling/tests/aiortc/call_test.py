#!/usr/bin/env python3
"""Two aiortc participants in a real call, written from docs/protocol.md alone.

A third-party WebRTC stack (aiortc, not a browser, not str0m) joins a call the way the document
says, and applies the server's answers exactly as they come, without touching a line of them:

- the teacher publishes a tone (microphone) and a moving picture (camera), the parent a tone;
- each declares receive-only slots: audio ones, a stage and thumbnails;
- both must connect (ICE and DTLS) to the SFU, which is ICE-lite;
- the parent must decode the teacher's audio and video from its slots, and the teacher the
  parent's audio: so the server both receives and forwards each one's media;
- the `slots` messages must say who is in the slots the media arrives on.

aiortc has no WebRTC encoded transforms, so it cannot encrypt end to end (docs/e2ee.md): it joins
without `e2ee`, which the server refuses (`e2ee_required`) until the class allows unencrypted
calls. The test checks that refusal, then sets the class option through the class backend's sync
API (with the API key the demo prints), and checks that the others it sees have no public key.

Exits 0 with a one-line summary, or 1 with what failed. scripts/aiortc-test.sh starts the server
(`signaling serve --demo`) and runs this with the demo's printout, which holds the class backend's
API key; the members' tokens come from the call links of the demo's home page `/`.
"""

import argparse
import array
import asyncio
import fractions
import json
import logging
import math
import re
import sys
import time
import urllib.request

import av
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
import websockets

AUDIO_RATE = 48000
AUDIO_PTIME = 0.020
AUDIO_SAMPLES = int(AUDIO_RATE * AUDIO_PTIME)
VIDEO_CLOCK = 90000
VIDEO_FPS = 15
# Small, so that two VP8 encoders and decoders in Python keep up on a 2-core CI machine.
VIDEO_WIDTH, VIDEO_HEIGHT = 320, 180


class Failure(Exception):
    pass


class ToneTrack(MediaStreamTrack):
    """A 400 Hz tone: a whole number of periods per 20 ms frame, so every frame is the same."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._start = None
        self._pts = 0
        samples = array.array(
            "h",
            (int(8000 * math.sin(2 * math.pi * 400 * i / AUDIO_RATE)) for i in range(AUDIO_SAMPLES)),
        )
        self._chunk = samples.tobytes()

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            self._pts += AUDIO_SAMPLES
            wait = self._start + self._pts / AUDIO_RATE - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        frame = av.AudioFrame(format="s16", layout="mono", samples=AUDIO_SAMPLES)
        frame.planes[0].update(self._chunk)
        frame.pts = self._pts
        frame.sample_rate = AUDIO_RATE
        frame.time_base = fractions.Fraction(1, AUDIO_RATE)
        return frame


class PatternTrack(MediaStreamTrack):
    """A grey picture with a bright bar sweeping across it."""

    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self._start = None
        self._n_frames = 0

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            self._n_frames += 1
            wait = self._start + self._n_frames / VIDEO_FPS - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        frame = av.VideoFrame(width=VIDEO_WIDTH, height=VIDEO_HEIGHT, format="yuv420p")
        bar = (self._n_frames * 8) % VIDEO_WIDTH
        row = bytearray([80]) * VIDEO_WIDTH
        row[bar : bar + 16] = bytes([235]) * len(row[bar : bar + 16])
        luma = bytes(row) * VIDEO_HEIGHT
        y_plane, u_plane, v_plane = frame.planes
        # Planes may have padding: write row by row at their own stride.
        padded = b"".join(
            luma[r * VIDEO_WIDTH : (r + 1) * VIDEO_WIDTH].ljust(y_plane.line_size, b"\0")
            for r in range(VIDEO_HEIGHT)
        )
        y_plane.update(padded.ljust(y_plane.buffer_size, b"\0"))
        u_plane.update(bytes([128]) * u_plane.buffer_size)
        v_plane.update(bytes([128]) * v_plane.buffer_size)
        frame.pts = self._n_frames * (VIDEO_CLOCK // VIDEO_FPS)
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        return frame


class Participant:
    """One member in the call: a WebSocket, a peer connection, and what arrives on its slots."""

    def __init__(self, name: str, ws_url: str, token: str, camera: bool) -> None:
        self.name = name
        self.ws_url = ws_url
        self.token = token
        self.camera = camera
        self.pc = RTCPeerConnection()
        self.ws = None
        self.participant_id = None
        self.joined = None
        self.admitted = asyncio.Event()
        self.connected = asyncio.Event()
        self.slot_kinds = {}  # mid -> "audio" | "stage" | "thumbnail"
        self.slot_map = {}  # mid -> the latest entry of `slots` for it
        self.frames = {}  # mid -> frames decoded on that slot
        self.speakers_seen = set()  # everyone a `speakers` message named
        self.errors = []
        self.tasks = []

        @self.pc.on("connectionstatechange")
        def on_state() -> None:
            state = self.pc.connectionState
            log(f"{self.name}: peer connection {state}")
            if state == "connected":
                self.connected.set()
            elif state == "failed":
                self.errors.append("peer connection failed (ICE or DTLS)")
                self.connected.set()

    async def join(self, n_audio_slots: int, n_thumbnails: int) -> None:
        """Offers its own tracks and its slots, then applies the server's answer as it is."""
        tracks = []
        microphone = self.pc.addTransceiver(ToneTrack(), direction="sendonly")
        camera = self.pc.addTransceiver(PatternTrack(), direction="sendonly") if self.camera else None
        slots = [(self.pc.addTransceiver("audio", direction="recvonly"), "audio") for _ in range(n_audio_slots)]
        slots.append((self.pc.addTransceiver("video", direction="recvonly"), "stage"))
        slots += [(self.pc.addTransceiver("video", direction="recvonly"), "thumbnail") for _ in range(n_thumbnails)]
        offer = await self.pc.createOffer()
        # aiortc gathers its candidates while setting the local description: they are in its SDP,
        # so there is nothing to trickle with `candidate`.
        await self.pc.setLocalDescription(offer)
        # Mids are known once the offer is set.
        tracks.append({"mid": microphone.mid, "source": "microphone"})
        if camera is not None:
            tracks.append({"mid": camera.mid, "source": "camera"})
        for transceiver, kind in slots:
            self.slot_kinds[transceiver.mid] = kind
            self.frames[transceiver.mid] = 0

        self.ws = await websockets.connect(self.ws_url, max_size=None, open_timeout=10)
        await self.send(
            {
                "type": "join",
                "token": self.token,
                "sdp": self.pc.localDescription.sdp,
                "tracks": tracks,
                "slots": [{"mid": mid, "kind": kind} for mid, kind in self.slot_kinds.items()],
            }
        )
        joined = await self.expect("joined")
        self.joined = joined
        self.participant_id = joined["participant_id"]
        if joined.get("protocol_version") != 2:
            raise Failure(f"{self.name}: protocol_version {joined.get('protocol_version')}, expected 2")
        log(f"{self.name}: joined as {self.participant_id} ({joined['role']})")
        # The answer, exactly as the server wrote it.
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=joined["sdp"], type="answer"))
        for transceiver, _ in slots:
            self.tasks.append(asyncio.ensure_future(self.count_frames(transceiver.mid, transceiver.receiver.track)))
        self.tasks.append(asyncio.ensure_future(self.read_messages()))

    async def send(self, message: dict) -> None:
        await self.ws.send(json.dumps(message))

    async def expect(self, wanted: str) -> dict:
        """Reads messages up to the first of type `wanted`; an `error` or `left` first fails."""
        while True:
            message = json.loads(await asyncio.wait_for(self.ws.recv(), timeout=20))
            kind = message.get("type")
            if kind == wanted:
                return message
            if kind in ("error", "left"):
                raise Failure(f"{self.name}: {kind} while waiting for {wanted}: {message}")
            self.handle(message)

    async def read_messages(self) -> None:
        try:
            async for raw in self.ws:
                self.handle(json.loads(raw))
        except websockets.ConnectionClosed:
            pass

    def handle(self, message: dict) -> None:
        kind = message.get("type")
        if kind == "admitted":
            log(f"{self.name}: admitted with {len(message['participants'])} other(s)")
            for participant in message["participants"]:
                self.check_unencrypted(participant)
            self.admitted.set()
        elif kind == "participant_joined":
            self.check_unencrypted(message["participant"])
        elif kind == "waiting":
            log(f"{self.name}: waiting for the teacher")
        elif kind == "slots":
            for slot in message["slots"]:
                self.slot_map[slot["mid"]] = slot
        elif kind == "speakers":
            self.speakers_seen.update(message["participant_ids"])
        elif kind in ("error", "left"):
            self.errors.append(f"server sent {message}")

    def check_unencrypted(self, participant: dict) -> None:
        """Everyone in this call is an aiortc client: none has a public key to show."""
        if "e2ee_public_key" not in participant or participant["e2ee_public_key"] is not None:
            self.errors.append(f"a participant without encryption shows a public key: {participant}")

    async def count_frames(self, mid: str, track) -> None:
        try:
            while True:
                await track.recv()
                self.frames[mid] += 1
        except MediaStreamError:
            pass

    def received(self, publisher_id: str, kind: str) -> int:
        """Frames decoded on the slots the server says carry `publisher_id`'s `kind` of media."""
        total = 0
        for mid, slot in self.slot_map.items():
            slot_is_audio = slot["kind"] == "audio"
            if slot["participant_id"] == publisher_id and slot_is_audio == (kind == "audio"):
                total += self.frames.get(mid, 0)
        return total

    async def close(self) -> None:
        if self.ws is not None:
            try:
                await self.send({"type": "leave"})
            except websockets.ConnectionClosed:
                pass
            await self.ws.close()
        for task in self.tasks:
            task.cancel()
        await self.pc.close()


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def demo_tokens(base: str, class_id: str) -> dict:
    """Role -> token of the first demo member of `class_id` with that role, from the call links of
    the demo's home page `/`, as a person would click them: the token is in the link's fragment."""
    with urllib.request.urlopen(f"{base.rstrip('/')}/", timeout=10) as response:
        html = response.read().decode()
    tokens = {}
    for user, path, token in re.findall(r'<a data-kind="call" data-user="([^"]+)" href="([^"#]+)#token=([^"]+)"', html):
        role = user.split("-")[0]
        if path == f"/call/{class_id}":
            tokens.setdefault(role, token)
    return tokens


def demo_api_key(printout: str) -> str:
    """The class backend's API key, which `signaling serve --demo` prints."""
    found = re.search(r"\(KLASS_API_KEY\): (\S+)", printout)
    if not found:
        raise Failure("no class backend API key in the demo's printout")
    return found.group(1)


def backend(base: str, api_key: str, method: str, path: str, body=None) -> dict:
    """One call of the class backend's sync API; its JSON answer."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{base.rstrip('/')}{path}", data=data, method=method)
    request.add_header("Authorization", f"Bearer {api_key}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


async def refused_without_encryption(ws_url: str, token: str) -> None:
    """A join without `e2ee` in a class that does not allow unencrypted calls: `e2ee_required`."""
    async with websockets.connect(ws_url, open_timeout=10) as ws:
        await ws.send(json.dumps({"type": "join", "token": token, "sdp": "v=0\r\n", "tracks": []}))
        answer = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
    if answer.get("type") != "error" or answer.get("code") != "e2ee_required":
        raise Failure(f"a join without e2ee was not refused with e2ee_required: {answer}")
    log(f"without encryption: refused ({answer['code']}: {answer['message']})")


async def run(args) -> None:
    with open(args.demo_output, encoding="utf-8") as printout:
        demo_printout = printout.read()
    tokens = demo_tokens(args.base, args.class_id)
    if "teacher" not in tokens or "parent" not in tokens:
        raise Failure(f"no teacher and parent call links for {args.class_id} on {args.base}/")
    ws_url = re.sub(r"^http", "ws", args.base.rstrip("/")) + f"/v1/classes/{args.class_id}/visio/ws"

    # aiortc cannot encrypt: refused, until the class backend allows unencrypted calls.
    await refused_without_encryption(ws_url, tokens["teacher"])
    api_key = demo_api_key(demo_printout)
    path = f"/v1/classes/{args.class_id}"
    view = backend(args.base, api_key, "GET", path)
    options = dict(view["options"], visio_allow_unencrypted=True)
    view = backend(args.base, api_key, "PUT", path, {"name": view["name"], "tier": view["tier"], "options": options})
    if view["options"].get("visio_allow_unencrypted") is not True:
        raise Failure(f"the class option did not stick: {view}")

    teacher = Participant("teacher", ws_url, tokens["teacher"], camera=True)
    parent = Participant("parent", ws_url, tokens["parent"], camera=False)
    try:
        # The teacher starts the session; the parent is admitted at once.
        await teacher.join(n_audio_slots=3, n_thumbnails=2)
        await parent.join(n_audio_slots=3, n_thumbnails=2)
        for who in (teacher, parent):
            try:
                await asyncio.wait_for(who.admitted.wait(), timeout=10)
            except asyncio.TimeoutError:
                raise Failure(f"{who.name}: not admitted within 10 s") from None
            try:
                await asyncio.wait_for(who.connected.wait(), timeout=args.connect_timeout)
            except asyncio.TimeoutError:
                ice = who.pc.getTransceivers()[0].receiver.transport.transport
                remote = [f"{c.protocol} {c.ip}:{c.port}" for c in ice.getRemoteCandidates()]
                raise Failure(
                    f"{who.name}: ICE/DTLS not connected within {args.connect_timeout} s "
                    f"(ICE {who.pc.iceConnectionState}, peer connection {who.pc.connectionState}, "
                    f"remote candidates in use: {remote or 'none'})"
                ) from None
            if who.errors:
                raise Failure(f"{who.name}: {who.errors}")

        def counts():
            return {
                "parent <- teacher audio": parent.received(teacher.participant_id, "audio"),
                "parent <- teacher video": parent.received(teacher.participant_id, "video"),
                "teacher <- parent audio": teacher.received(parent.participant_id, "audio"),
            }

        def enough(figures):
            return (
                figures["parent <- teacher audio"] >= args.min_audio_frames
                and figures["parent <- teacher video"] >= args.min_video_frames
                and figures["teacher <- parent audio"] >= args.min_audio_frames
            )

        deadline = time.monotonic() + args.media_timeout
        started = time.monotonic()
        while not enough(counts()) and time.monotonic() < deadline:
            for who in (teacher, parent):
                if who.errors:
                    raise Failure(f"{who.name}: {who.errors}")
            await asyncio.sleep(0.25)
        figures = counts()
        summary = ", ".join(f"{name}: {n} frames" for name, n in figures.items())
        log(f"after {time.monotonic() - started:.1f} s: {summary}")
        log(f"parent's slots: {sorted((m, s['participant_id'], s['source']) for m, s in parent.slot_map.items())}")
        log(f"teacher's slots: {sorted((m, s['participant_id'], s['source']) for m, s in teacher.slot_map.items())}")
        if not enough(figures):
            raise Failure(
                f"too little media within {args.media_timeout} s (wanted {args.min_audio_frames} audio and "
                f"{args.min_video_frames} video frames): {summary}; frames by slot: parent "
                f"{parent.frames}, teacher {teacher.frames}"
            )
        # The tone is loud: its RFC 6464 levels make each one a speaker for the other.
        for who, other in ((teacher, parent), (parent, teacher)):
            if other.participant_id not in who.speakers_seen:
                raise Failure(f"{who.name} was never told that {other.name} speaks (`speakers`)")
        # Nobody receives their own media.
        for who in (teacher, parent):
            own = who.received(who.participant_id, "audio") + who.received(who.participant_id, "video")
            if own:
                raise Failure(f"{who.name} received {own} frames of its own media")
        print(f"aiortc call test: ok; {summary}", flush=True)
    finally:
        for who in (parent, teacher):
            await who.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the server's HTTP base URL")
    parser.add_argument("--demo-output", required=True, help="what `signaling serve --demo` printed")
    parser.add_argument("--class-id", default="demo-standard")
    parser.add_argument("--connect-timeout", type=float, default=20)
    parser.add_argument("--media-timeout", type=float, default=30)
    parser.add_argument("--min-audio-frames", type=int, default=100, help="20 ms each")
    parser.add_argument("--min-video-frames", type=int, default=30)
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING)
    try:
        asyncio.run(run(args))
    except Failure as failure:
        print(f"aiortc call test: FAILED: {failure}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
