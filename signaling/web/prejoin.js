// The pre-join screen: before the page joins, one sees who one will be in the call (name and role,
// as the class knows them: `GET /v1/classes/{id}/capabilities`), one's camera, one's microphone
// level, picks the camera and microphone, and may choose to enter with either off. A link the
// server refuses (not a member, bad token, a tier without calls) is explained here, before any
// camera is asked for. `runPrejoin` resolves once "Entrer dans la visio" is pressed.

import { S, roleText, errorText } from './strings.js';
import { call, local, ui, trace, setState, setStatus } from './state.js';
import { getLocalMedia, stopLocalMedia } from './connection.js';

const $ = (id) => document.getElementById(id);
const view = {
  section: $('prejoin'), who: $('prejoin-who'), video: $('prejoin-video'),
  placeholder: $('prejoin-placeholder'), camera: $('prejoin-camera'), mic: $('prejoin-mic'),
  level: $('prejoin-level'), micOn: $('prejoin-mic-on'), camOn: $('prejoin-cam-on'),
  enter: $('prejoin-enter'),
};

/** What the tests read: the capabilities, the loudest level the meter showed, the devices. */
call.prejoin = { capabilities: null, maxLevel: 0, devices: [] };

/**
 * Who we are in the class, or why the server refuses us: `{ capabilities }` or `{ code }` for a
 * refusal that a join would get too. Other failures (network, busy) give `{}`: the join decides.
 */
async function fetchCapabilities(classId, token) {
  try {
    const res = await fetch(`/v1/classes/${encodeURIComponent(classId)}/capabilities`, {
      headers: { authorization: `Bearer ${token}` },
      cache: 'no-store',
    });
    const body = await res.json().catch(() => null);
    if (res.ok && body) {
      return body.visio && body.visio.allowed ? { capabilities: body } : { code: 'tier_forbids_visio' };
    }
    if ((res.status === 401 || res.status === 403) && body && body.code) return { code: body.code };
  } catch (err) {
    trace(`capabilities failed: ${err && err.name}`);
  }
  return {};
}

function initials(name) {
  return name.split(/\s+/).filter(Boolean).map((w) => w[0]).join('').slice(0, 2).toUpperCase();
}

// ---------- microphone level ----------

let audioContext = null;
let meterSource = null;
let meterTimer = null;

function stopMeter() {
  clearInterval(meterTimer);
  meterTimer = null;
  if (meterSource) meterSource.disconnect();
  meterSource = null;
}

function startMeter(track) {
  stopMeter();
  view.level.value = 0;
  if (!track || typeof AudioContext === 'undefined') return;
  try {
    audioContext = audioContext || new AudioContext();
    meterSource = audioContext.createMediaStreamSource(new MediaStream([track]));
  } catch (err) {
    trace(`level meter unavailable: ${err && err.name}`);
    return;
  }
  const analyser = audioContext.createAnalyser();
  analyser.fftSize = 1024;
  meterSource.connect(analyser);
  const samples = new Float32Array(analyser.fftSize);
  // Ten times a second is enough for the eye and spares a phone's CPU.
  meterTimer = setInterval(() => {
    if (audioContext.state === 'suspended') audioContext.resume().catch(() => {});
    analyser.getFloatTimeDomainData(samples);
    let sum = 0;
    for (const x of samples) sum += x * x;
    const rms = Math.sqrt(sum / samples.length);
    // Speech sits around -30 dBFS: a square-root scale puts it mid-meter.
    const level = view.micOn.checked ? Math.min(1, Math.sqrt(rms) * 1.6) : 0;
    view.level.value = level;
    call.prejoin.maxLevel = Math.max(call.prejoin.maxLevel, level);
    call.prejoin.meter = { context: audioContext.state, rms };
  }, 100);
}

// ---------- devices ----------

async function fillDevices() {
  let devices = [];
  try {
    devices = await navigator.mediaDevices.enumerateDevices();
  } catch (err) {
    trace(`enumerateDevices failed: ${err && err.name}`);
  }
  call.prejoin.devices = devices.map((d) => ({ kind: d.kind, deviceId: d.deviceId, label: d.label }));
  const choices = [['videoinput', view.camera, local.videoTrack], ['audioinput', view.mic, local.audioTrack]];
  for (const [kind, select, track] of choices) {
    const list = devices.filter((d) => d.kind === kind && d.deviceId);
    select.textContent = '';
    list.forEach((d, idx) => {
      const option = document.createElement('option');
      option.value = d.deviceId;
      option.textContent = d.label || S.deviceN(kind, idx + 1);
      select.append(option);
    });
    if (list.length === 0) {
      const option = document.createElement('option');
      option.value = '';
      option.textContent = S.noDevice(kind);
      select.append(option);
    }
    select.disabled = list.length < 2;
    const current = track && track.getSettings ? track.getSettings().deviceId : null;
    if (current && list.some((d) => d.deviceId === current)) select.value = current;
  }
}

function useStream(stream) {
  local.stream = stream;
  local.audioTrack = stream ? stream.getAudioTracks()[0] || null : null;
  local.videoTrack = stream ? stream.getVideoTracks()[0] || null : null;
  call.prejoin.micDeviceId = local.audioTrack ? local.audioTrack.getSettings().deviceId : null;
  view.video.srcObject = local.videoTrack ? new MediaStream([local.videoTrack]) : null;
  view.micOn.disabled = !local.audioTrack;
  view.camOn.disabled = !local.videoTrack;
  if (!local.audioTrack) view.micOn.checked = false;
  if (!local.videoTrack) view.camOn.checked = false;
  startMeter(local.audioTrack);
  refreshPreview();
}

function refreshPreview() {
  const camOn = !!local.videoTrack && view.camOn.checked;
  if (local.videoTrack) local.videoTrack.enabled = camOn;
  if (local.audioTrack) local.audioTrack.enabled = view.micOn.checked;
  view.video.hidden = !camOn;
  view.placeholder.hidden = camOn;
}

async function switchDevices() {
  view.enter.disabled = true;
  // Some cameras cannot be opened twice: the old tracks go first.
  stopMeter();
  stopLocalMedia();
  const stream = await getLocalMedia({ audioDeviceId: view.mic.value || null, videoDeviceId: view.camera.value || null });
  useStream(stream);
  trace(`devices: mic ${view.mic.value.slice(0, 8)} camera ${view.camera.value.slice(0, 8)}`);
  view.enter.disabled = false;
}

// ---------- the screen ----------

/**
 * Shows the pre-join screen. Resolves `{ micOn, camOn }` when the user enters, with `local`'s
 * stream and tracks those chosen; or `null` when the server refuses this link (the page then says
 * why, as it does for a refused join).
 */
export async function runPrejoin(classId, token) {
  const { capabilities, code } = await fetchCapabilities(classId, token);
  if (code) {
    call.errorCode = code;
    setState('refused');
    setStatus(errorText(code));
    ui.status.dataset.code = code;
    return null;
  }
  call.prejoin.capabilities = capabilities || null;
  if (capabilities) {
    view.who.textContent = S.prejoinAs(capabilities.display_name, roleText(capabilities.role), null);
    view.placeholder.textContent = initials(capabilities.display_name);
  }

  useStream(await getLocalMedia());
  await fillDevices();
  // Browsers may hold Web Audio until the person does something on the page: the meter then
  // starts with their first click or key.
  const wake = () => { if (audioContext && audioContext.state === 'suspended') audioContext.resume().catch(() => {}); };
  document.addEventListener('pointerdown', wake, true);
  document.addEventListener('keydown', wake, true);
  view.camera.addEventListener('change', switchDevices);
  view.mic.addEventListener('change', switchDevices);
  view.micOn.addEventListener('change', refreshPreview);
  view.camOn.addEventListener('change', refreshPreview);

  view.section.hidden = false;
  view.enter.disabled = false;
  setStatus(S.prejoinReady);
  setState('prejoin');
  call.timings.prejoin = performance.now();
  await new Promise((resolve) => view.enter.addEventListener('click', resolve, { once: true }));

  stopMeter();
  if (audioContext) audioContext.close().catch(() => {});
  audioContext = null;
  view.video.srcObject = null;
  view.section.hidden = true;
  return { micOn: view.micOn.checked, camOn: view.camOn.checked };
}
