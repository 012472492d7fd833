{
  # One build definition for the addon. The engine (raft 0.22.1, fetched into
  # third_party/raft by scripts/fetch-engine.sh) is compiled here as a static,
  # position-independent library with hidden symbols; its uv_* calls stay undefined
  # and resolve against the node binary, so exactly one libuv is in the process.
  'target_defaults': {
    'defines': [
      '_GNU_SOURCE',
      '_FILE_OFFSET_BITS=64',
      'HAVE_LINUX_AIO_ABI_H=1',
      'V0_ENABLED',
      'RAFT_API=',
    ],
    'include_dirs': ['third_party/raft/include'],
  },
  'targets': [
    {
      'target_name': 'raft_engine',
      'type': 'static_library',
      'sources': ['<!@(node scripts/engine-sources.mjs)'],
      'cflags': ['-std=c11', '-fPIC', '-fvisibility=hidden', '-g', '-O2', '-Wno-unused-parameter',
                 '-Wno-sign-compare', '-Wno-missing-field-initializers', '-Wno-implicit-fallthrough'],
      'cflags!': ['-fno-exceptions'],
    },
    {
      'target_name': 'prevail',
      'dependencies': [
        'raft_engine',
        "<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except",
      ],
      'sources': [
        'native/addon.cc',
        'native/args.cc',
        'native/completion_queue.cc',
        'native/engine.cc',
        'native/engine_loop.cc',
        'native/engine_shim.c',
        'native/engine_start.cc',
        'native/engine_streams.cc',
        'native/errors.cc',
        'native/framing.cc',
        'native/fsm.cc',
        'native/listen_heap.cc',
        'native/names.cc',
        'native/requests.cc',
        'native/start_options.cc',
        'native/status.cc',
        'native/stream_transport.cc',
      ],
      'cflags': ['-fvisibility=hidden', '-O2'],
      'cflags_cc': ['-std=c++17', '-fvisibility=hidden', '-O2'],
      # Only the N-API entry points are exported (native/exports.map); prebuilds are
      # stripped by prebuildify --strip (npm run prebuild).
      'ldflags': ['-Wl,--exclude-libs,ALL', '-Wl,--version-script=<(module_root_dir)/native/exports.map'],
    },
  ],
}
