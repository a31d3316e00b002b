// Network namespaces for the browser tests: a client whose network we impair runs in a namespace
// of its own (Chromium included, through a wrapper script), linked to the root namespace by a
// veth pair; iptables rules there hand its packets to `netimpair` (NFQUEUE), which delays, loses,
// rate-limits or cuts them. The kernel here has no sch_netem, so this is how a test gets a bad
// network. Everything stays on this machine: 10.x addresses on our own veths, nothing routed out.
//
//   root namespace                            namespace klassnet-<pid>-<name>
//   ┌────────────────────────────────┐        ┌───────────────────────────────────────────────┐
//   │ kni<id>h 10.S.0.1/32: the hub, │        │ eth0 10.S.i.2/24, default route via .1        │
//   │   the SFU binds and advertises │  veth  │ OUTPUT -o eth0 → KLASS_OUT → NFQUEUE 10 (up)  │
//   │ kni<id>c<i> 10.S.i.1/24 ───────┼────────┤ INPUT  -i eth0 → KLASS_IN  → NFQUEUE 11 (down)│
//   │ server, unimpaired Chromium    │        │ netimpair, Chromium                           │
//   └────────────────────────────────┘        └───────────────────────────────────────────────┘
//
// The server stays in the root namespace: the hub address is local there, so unimpaired pages
// reach it too. Clients reach the hub through their veth (no forwarding: it is a local address).
// Needs root, `ip` (iproute2), `iptables` and the `netimpair` binary (NETIMPAIR_BIN, by default
// beside SIGNALING_BIN). `netnsUnavailable()` says why not, for a test to skip.
//
// Names carry the test process's pid, so that a later run removes what a crashed one left
// (`removeStale`) and never what a running one uses.

import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export const NETIMPAIR_BIN =
  process.env.NETIMPAIR_BIN ||
  path.join(process.env.SIGNALING_BIN ? path.dirname(process.env.SIGNALING_BIN) : path.join(os.homedir(), '.cache/klass/target/debug'), 'netimpair');
const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const NS_PREFIX = 'klassnet-';
const LINK_PREFIX = 'kni';
/** The NFQUEUE numbers of a client's two directions (per namespace, so the same in each). */
export const QUEUE_UP = 10;
export const QUEUE_DOWN = 11;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function run(cmd, args, { ns = null, allowFail = false } = {}) {
  const [file, argv] = ns ? ['ip', ['netns', 'exec', ns, cmd, ...args]] : [cmd, args];
  try {
    return execFileSync(file, argv, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    if (allowFail) return null;
    throw new Error(`${file} ${argv.join(' ')}: ${(err.stderr || err.message).trim()}`);
  }
}

function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return err.code === 'EPERM';
  }
}

/** Why namespaces cannot be used here (a string, for a skip message), or null when they can. */
export function netnsUnavailable() {
  if (process.platform !== 'linux') return 'network namespaces need Linux';
  if (typeof process.getuid === 'function' && process.getuid() !== 0) return 'network namespaces need root';
  if (run('ip', ['netns', 'list'], { allowFail: true }) === null) return '`ip netns` is not available (iproute2)';
  if (run('iptables', ['--version'], { allowFail: true }) === null) return '`iptables` is not installed';
  if (!fs.existsSync(NETIMPAIR_BIN)) return `no netimpair binary at ${NETIMPAIR_BIN} (cargo build -p netimpair, or set NETIMPAIR_BIN)`;
  // A namespace and an NFQUEUE rule, to find a kernel without them now rather than mid-test.
  const probe = `${NS_PREFIX}${process.pid}-probe`;
  try {
    run('ip', ['netns', 'add', probe]);
    run('iptables', ['-A', 'OUTPUT', '-p', 'udp', '-j', 'NFQUEUE', '--queue-num', String(QUEUE_UP)], { ns: probe });
  } catch (err) {
    return `network namespaces or NFQUEUE do not work here: ${err.message}`;
  } finally {
    run('ip', ['netns', 'del', probe], { allowFail: true });
  }
  return null;
}

/** Removes namespaces and links that a test process which is no longer running left behind. */
export function removeStale() {
  const namespaces = (run('ip', ['netns', 'list'], { allowFail: true }) || '')
    .split('\n')
    .map((line) => line.split(' ')[0])
    .filter((name) => name.startsWith(NS_PREFIX));
  for (const ns of namespaces) {
    const pid = Number(ns.slice(NS_PREFIX.length).split('-')[0]);
    if (!Number.isInteger(pid) || alive(pid)) continue;
    killNamespacePids(ns);
    run('ip', ['netns', 'del', ns], { allowFail: true });
    console.log(`netns: removed ${ns}, left by a test process that ended (pid ${pid})`);
  }
  const links = (run('ip', ['-o', 'link', 'show'], { allowFail: true }) || '')
    .split('\n')
    .map((line) => (/^\d+: ([^:@]+)/.exec(line) || [])[1])
    .filter(Boolean);
  for (const link of links) {
    const m = new RegExp(`^${LINK_PREFIX}([0-9a-z]+)[hgc]\\d*$`).exec(link);
    if (!m || alive(parseInt(m[1], 36))) continue;
    run('ip', ['link', 'del', link], { allowFail: true });
    console.log(`netns: removed link ${link}, left by a test process that ended`);
  }
}

/** Ends the processes a namespace of ours still holds (a crashed run's Chromium or netimpair). */
function killNamespacePids(ns) {
  const pids = (run('ip', ['netns', 'pids', ns], { allowFail: true }) || '').split('\n').map(Number).filter((p) => p > 0);
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

/** A second octet for 10.S.0.0/16 that no address or route of this machine uses yet. */
function pickSubnet() {
  const used = (run('ip', ['-4', '-o', 'addr', 'show'], { allowFail: true }) || '') + (run('ip', ['-4', 'route', 'show', 'table', 'all'], { allowFail: true }) || '');
  for (let k = 0; k < 100; k++) {
    const octet = 100 + ((process.pid + k) % 100);
    if (!used.includes(`10.${octet}.`)) return octet;
  }
  throw new Error('no free 10.x.0.0/16 for the test network');
}

/**
 * Creates the test network: the hub address in the root namespace, and nothing else yet
 * (`addClient` adds namespaces). Removes what crashed runs left first. `cleanup()` (also run
 * on process exit) removes everything.
 */
export function createLab() {
  removeStale();
  const id = process.pid.toString(36);
  const octet = pickSubnet();
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'klass-netns-'));
  const lab = new Lab(id, octet, tmp);
  run('ip', ['link', 'add', lab.hubLink, 'type', 'veth', 'peer', 'name', `${LINK_PREFIX}${id}g`]);
  run('ip', ['addr', 'add', `${lab.hubIp}/32`, 'dev', lab.hubLink]);
  // No IPv6 on our links: their link-local addresses would come up a second or two later, and
  // Chromium fails the requests of a page that is loading at that moment (ERR_NETWORK_CHANGED).
  run('sysctl', ['-q', '-w', `net.ipv6.conf.${lab.hubLink}.disable_ipv6=1`], { allowFail: true });
  run('sysctl', ['-q', '-w', `net.ipv6.conf.${LINK_PREFIX}${id}g.disable_ipv6=1`], { allowFail: true });
  run('ip', ['link', 'set', lab.hubLink, 'up']);
  run('ip', ['link', 'set', `${LINK_PREFIX}${id}g`, 'up']);
  return lab;
}

class Lab {
  constructor(id, octet, tmp) {
    this.id = id;
    this.octet = octet;
    this.tmp = tmp;
    this.hubLink = `${LINK_PREFIX}${id}h`;
    /** The root namespace's address every client reaches: bind and advertise the SFU here. */
    this.hubIp = `10.${octet}.0.1`;
    this.clients = [];
    this.forwarders = [];
    this.connections = [];
    this.cleaned = false;
    this.onExit = () => this.cleanupSync();
    process.on('exit', this.onExit);
  }

  /** A client namespace `name`, with its veth, address and (empty) filter chains. */
  addClient(name) {
    const idx = this.clients.length + 1;
    const client = new Client(this, name, idx);
    this.clients.push(client);
    client.create();
    return client;
  }

  /**
   * Listens on the hub address and forwards each TCP connection to 127.0.0.1:`targetPort` (the
   * server's HTTP port, which stays on loopback). Returns the base URL clients use.
   */
  async forwardTcp(targetPort, listenPort = targetPort) {
    const server = net.createServer((inbound) => {
      const outbound = net.connect(targetPort, '127.0.0.1');
      // Destroyed at cleanup: a connection whose client address went away (`changeAddress`)
      // never closes by itself, and would keep the test process alive.
      this.connections.push(inbound, outbound);
      inbound.pipe(outbound);
      outbound.pipe(inbound);
      inbound.on('error', () => outbound.destroy());
      outbound.on('error', () => inbound.destroy());
    });
    await new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(listenPort, this.hubIp, resolve);
    });
    this.forwarders.push(server);
    return `http://${this.hubIp}:${server.address().port}`;
  }

  /** Stops netimpair processes, removes the namespaces, links and files. Safe to call twice. */
  async cleanup() {
    for (const f of this.forwarders) f.close();
    this.forwarders = [];
    for (const c of this.connections) c.destroy();
    this.connections = [];
    for (const client of this.clients) await client.stopImpair().catch(() => {});
    this.cleanupSync();
  }

  cleanupSync() {
    if (this.cleaned) return;
    this.cleaned = true;
    process.off('exit', this.onExit);
    for (const client of this.clients) {
      if (client.impair && client.impair.exited === null) {
        try {
          client.impair.proc.kill('SIGKILL');
        } catch {
          // gone
        }
      }
      killNamespacePids(client.ns);
      run('ip', ['netns', 'del', client.ns], { allowFail: true });
      // Deleting the namespace deletes the veth pair; this is for a namespace already gone.
      run('ip', ['link', 'del', client.hostLink], { allowFail: true });
    }
    run('ip', ['link', 'del', this.hubLink], { allowFail: true });
    fs.rmSync(this.tmp, { recursive: true, force: true });
  }
}

class Client {
  constructor(lab, name, idx) {
    this.lab = lab;
    this.name = name;
    this.idx = idx;
    this.ns = `${NS_PREFIX}${process.pid}-${name}`;
    this.hostLink = `${LINK_PREFIX}${lab.id}c${idx}`;
    this.gateway = `10.${lab.octet}.${idx}.1`;
    this.addressNo = 2;
    this.ip = `10.${lab.octet}.${idx}.2`;
    this.impair = null; // { proc, socket, exited, stdout }
  }

  /** Runs a command inside the namespace (synchronously); returns its stdout. */
  exec(cmd, ...args) {
    return run(cmd, args, { ns: this.ns });
  }

  create() {
    run('ip', ['netns', 'add', this.ns]);
    run('ip', ['link', 'add', this.hostLink, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', this.ns]);
    run('ip', ['addr', 'add', `${this.gateway}/24`, 'dev', this.hostLink]);
    run('sysctl', ['-q', '-w', `net.ipv6.conf.${this.hostLink}.disable_ipv6=1`], { allowFail: true });
    this.exec('sysctl', '-q', '-w', 'net.ipv6.conf.eth0.disable_ipv6=1');
    run('ip', ['link', 'set', this.hostLink, 'up']);
    this.exec('ip', 'link', 'set', 'lo', 'up');
    // A new address must survive the removal of the old one (they share the subnet).
    this.exec('sysctl', '-q', '-w', 'net.ipv4.conf.eth0.promote_secondaries=1');
    this.exec('ip', 'addr', 'add', `${this.ip}/24`, 'dev', 'eth0');
    this.exec('ip', 'link', 'set', 'eth0', 'up');
    this.exec('ip', 'route', 'add', 'default', 'via', this.gateway);
    // Filters first (blockUdp, allowOnlyTcp), then the impairment's NFQUEUE rules.
    this.exec('iptables', '-N', 'KLASS_OUT');
    this.exec('iptables', '-N', 'KLASS_IN');
    this.exec('iptables', '-A', 'OUTPUT', '-o', 'eth0', '-j', 'KLASS_OUT');
    this.exec('iptables', '-A', 'INPUT', '-i', 'eth0', '-j', 'KLASS_IN');
  }

  /** A script that runs Chromium in this namespace: playwright's `executablePath`. */
  chromiumWrapper() {
    const file = path.join(this.lab.tmp, `chromium-${this.name}.sh`);
    fs.writeFileSync(file, `#!/bin/sh\nexec ip netns exec ${this.ns} ${CHROMIUM} "$@"\n`, { mode: 0o755 });
    return file;
  }

  /**
   * Starts netimpair in the namespace with these settings (`up`: what the client sends, `down`:
   * what it receives; netimpair's text form, e.g. `delay=150,loss=8`, '' passes), waits until it
   * has bound its queues, then sends the client's traffic through it.
   */
  async startImpair({ up = '', down = '' } = {}) {
    if (this.impair) throw new Error(`${this.name}: netimpair already running`);
    const socket = path.join(this.lab.tmp, `impair-${this.name}.sock`);
    const logPath = path.join(this.lab.tmp, `impair-${this.name}.log`);
    const proc = spawn('ip', [
      'netns', 'exec', this.ns, NETIMPAIR_BIN,
      '--queue', `${QUEUE_UP}:${up}`, '--queue', `${QUEUE_DOWN}:${down}`, '--control', socket,
    ], { stdio: ['ignore', 'pipe', fs.openSync(logPath, 'a')] });
    const impair = { proc, socket, logPath, exited: null, stdout: '' };
    this.impair = impair;
    proc.on('exit', (code, signal) => { impair.exited = { code, signal }; });
    proc.stdout.on('data', (d) => { impair.stdout += d; });
    const deadline = Date.now() + 10_000;
    while (!impair.stdout.includes('ready\n')) {
      if (impair.exited || Date.now() > deadline) {
        throw new Error(`netimpair did not start (${JSON.stringify(impair.exited)}): ${fs.readFileSync(logPath, 'utf8')}`);
      }
      await sleep(20);
    }
    // No --queue-bypass: should netimpair die, the client's network stops, which a test sees.
    this.exec('iptables', '-A', 'OUTPUT', '-o', 'eth0', '-j', 'NFQUEUE', '--queue-num', String(QUEUE_UP));
    this.exec('iptables', '-A', 'INPUT', '-i', 'eth0', '-j', 'NFQUEUE', '--queue-num', String(QUEUE_DOWN));
  }

  /** Sends one control line to netimpair and returns its answer. */
  async control(line) {
    if (!this.impair || this.impair.exited) throw new Error(`${this.name}: netimpair is not running`);
    return new Promise((resolve, reject) => {
      const conn = net.createConnection(this.impair.socket);
      let answer = '';
      const timer = setTimeout(() => { conn.destroy(); reject(new Error(`netimpair: no answer to ${line}`)); }, 5000);
      conn.on('connect', () => conn.write(`${line}\n`));
      conn.on('data', (d) => {
        answer += d;
        if (answer.includes('\n')) {
          clearTimeout(timer);
          conn.end();
          const text = answer.trim();
          if (text.startsWith('error')) reject(new Error(`netimpair: ${line}: ${text}`));
          else resolve(text);
        }
      });
      conn.on('error', (err) => { clearTimeout(timer); reject(err); });
    });
  }

  /** New settings for each direction (packets already held keep theirs). */
  async setImpair({ up = '', down = '' } = {}) {
    await this.control(`set ${QUEUE_UP} ${up}`);
    await this.control(`set ${QUEUE_DOWN} ${down}`);
  }

  /** Cuts the client's network (everything dropped, both ways), or restores it. */
  async cut(on) {
    await this.control(`cut ${on ? 'on' : 'off'}`);
  }

  /** netimpair's counters now: { queues: [{ queue, in, out, dropped_*, mean_added_delay_ms, ... }] }. */
  async impairStats() {
    return JSON.parse(await this.control('stats'));
  }

  /** The counters so far, then starts them again from zero (a measuring window). */
  async resetImpairStats() {
    return JSON.parse(await this.control('reset'));
  }

  /** Takes the NFQUEUE rules out and stops netimpair; returns its final statistics. */
  async stopImpair() {
    const impair = this.impair;
    if (!impair) return null;
    this.impair = null;
    this.exec('iptables', '-D', 'OUTPUT', '-o', 'eth0', '-j', 'NFQUEUE', '--queue-num', String(QUEUE_UP));
    this.exec('iptables', '-D', 'INPUT', '-i', 'eth0', '-j', 'NFQUEUE', '--queue-num', String(QUEUE_DOWN));
    if (!impair.exited) {
      const exited = new Promise((resolve) => impair.proc.once('exit', resolve));
      impair.proc.kill('SIGTERM');
      await Promise.race([exited, sleep(5000)]);
      if (!impair.exited) impair.proc.kill('SIGKILL');
    }
    const line = impair.stdout.split('\n').find((l) => l.startsWith('stats '));
    return line ? JSON.parse(line.slice(6)) : null;
  }

  /** Drops every UDP packet in and out (a network that allows only TCP), or lifts that. */
  blockUdp(on = true) {
    this.clearFilters();
    if (!on) return;
    this.exec('iptables', '-A', 'KLASS_OUT', '-p', 'udp', '-j', 'DROP');
    this.exec('iptables', '-A', 'KLASS_IN', '-p', 'udp', '-j', 'DROP');
  }

  /** Lets through only TCP to (and from) the given ports of the hub: a strict firewall. */
  allowOnlyTcp(ports) {
    this.clearFilters();
    for (const port of ports) {
      this.exec('iptables', '-A', 'KLASS_OUT', '-p', 'tcp', '-d', this.lab.hubIp, '--dport', String(port), '-j', 'RETURN');
      this.exec('iptables', '-A', 'KLASS_IN', '-p', 'tcp', '-s', this.lab.hubIp, '--sport', String(port), '-j', 'RETURN');
    }
    this.exec('iptables', '-A', 'KLASS_OUT', '-j', 'DROP');
    this.exec('iptables', '-A', 'KLASS_IN', '-j', 'DROP');
  }

  clearFilters() {
    this.exec('iptables', '-F', 'KLASS_OUT');
    this.exec('iptables', '-F', 'KLASS_IN');
  }

  /**
   * A network change: the client gets a new address (same subnet), the old one goes, and the
   * default route follows. Open sockets on the old address break, as on a real change of
   * network. Returns the new address.
   */
  changeAddress() {
    const old = this.ip;
    this.addressNo += 1;
    if (this.addressNo > 254) throw new Error('no address left in the client subnet');
    this.ip = `10.${this.lab.octet}.${this.idx}.${this.addressNo}`;
    this.exec('ip', 'addr', 'add', `${this.ip}/24`, 'dev', 'eth0');
    this.exec('ip', 'addr', 'del', `${old}/24`, 'dev', 'eth0');
    this.exec('ip', 'route', 'replace', 'default', 'via', this.gateway, 'src', this.ip);
    return this.ip;
  }
}
