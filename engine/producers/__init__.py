"""Producers that fill rings: synthetic traffic (``synthetic``), an ITCH 5.0 / MoldUDP64 feed
(``itch_feed``), AF_XDP sockets on a NIC (``afxdp``); pcap replay is ``engine.replay``.  DPDK
is a later issue."""
