// What `npm run demo` shows, in order: each step is one real CLI run, what it must print to count as
// working, and one sentence for a newcomer about what it shows.

/** One CLI run of the demo. */
export interface DemoStep {
  /** Which binary runs: the host's CLI or the guest's. */
  side: 'host' | 'guest';
  /** A short title: who asks whom for what. */
  title: string;
  /** Arguments after the binary and its `--control-socket`. */
  args: string[];
  /** The exit status that counts as success. Default 0. */
  exitCode?: number;
  /** Patterns the output (stdout and stderr) must contain. */
  expect: RegExp[];
  /** One sentence: what this shows. */
  explain: string;
  /** A line the daemon of this side logs about the command it ran for the other side, to show after the output. */
  daemonLog?: { side: 'host' | 'guest'; pattern: RegExp };
}

// The demo's steps for a guest the host knows as `guest`.
export function createDemoSteps(guest: string): DemoStep[] {
  return [
    {
      side: 'host',
      title: 'the host lists its guests',
      args: ['--list-guests'],
      expect: [new RegExp(`^${guest}\\s`, 'm')],
      explain:
        `The host daemon knows ${guest} from --guest (on a real host it asks libvirt), and its agent answered the hello handshake on both channels.`,
    },
    {
      side: 'host',
      title: 'host -> guest: which commands does the guest offer?',
      args: ['--list-commands', guest],
      expect: [/^kernel\s+Kernel name/m, /^memory\s/m, /^who-is-calling\s/m, /^uptime\s/m],
      explain:
        'The guest offers the scripts of its command directory (examples/commands/guest) and the built-in read-only ones; each description is the script\'s first comment line.',
    },
    {
      side: 'host',
      title: 'host -> guest: run `kernel` in the guest',
      args: ['--execute', 'kernel', guest],
      expect: [/^\S+ \S+/m],
      explain: 'The guest daemon ran examples/commands/guest/kernel; its output streamed back here and its exit status became ours.',
    },
    {
      side: 'host',
      title: 'host -> guest: run `memory` in the guest',
      args: ['--execute', 'memory', guest],
      expect: [/^total \d+ MiB$/m, /^available \d+ MiB$/m],
      explain: 'Another read-only fact from the guest; a guest only runs what its administrator put in its command directories.',
    },
    {
      side: 'host',
      title: 'host -> guest: who is calling?',
      args: ['--execute', 'who-is-calling', guest],
      expect: [/^NEGOTIATOR_SIDE=guest$/m, /^NEGOTIATOR_PEER_SIDE=host$/m, /^other variables: HOME LANG PATH$/m],
      explain:
        'Guest commands get a clean environment: NEGOTIATOR_* variables describe the caller (the host), plus PATH, LANG and HOME; nothing else is inherited from the daemon.',
    },
    {
      side: 'host',
      title: 'host -> guest: a command the guest does not have',
      args: ['--execute', 'cat /etc/shadow', guest],
      exitCode: 127,
      expect: [/command `cat` not found/],
      explain: 'A peer can only run executables of the command directories, never any program (and no shell is involved): an unknown name fails with exit status 127.',
    },
    {
      side: 'guest',
      title: 'guest -> host: which commands does the host offer?',
      args: ['--list-commands'],
      expect: [/^reboot-notify\s+A guest tells the host/m, /^who-is-calling\s/m],
      explain: 'Now from inside the guest: the guest daemon relays over the guest-to-host channel to the host daemon, which lists examples/commands/host and its built-ins.',
    },
    {
      side: 'guest',
      title: 'guest -> host: tell the host we are about to reboot',
      args: ['--execute', 'reboot-notify kernel update'],
      expect: [new RegExp(`acknowledges: guest ${guest} may reboot`)],
      explain:
        `The host's reboot-notify logged the event under the name the host gives this guest (NEGOTIATOR_GUEST=${guest}, not a name the guest chose) and printed an acknowledgement.`,
      daemonLog: { side: 'host', pattern: /guest \S+ ran `reboot-notify`[^\n]*/ },
    },
    {
      side: 'guest',
      title: 'guest -> host: who is calling?',
      args: ['--execute', 'who-is-calling'],
      expect: [new RegExp(`^NEGOTIATOR_GUEST=${guest}$`, 'm'), /^NEGOTIATOR_SIDE=host$/m, /^NEGOTIATOR_PEER_SIDE=guest$/m],
      explain: 'On the host, commands also learn which guest called (NEGOTIATOR_GUEST, and NEGOTIATOR_GUEST_UUID for libvirt guests).',
    },
  ];
}
