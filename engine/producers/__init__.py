"""Producers that fill rings: synthetic traffic (``synthetic``), an ITCH 5.0 / MoldUDP64 feed
(``itch_feed``), AF_XDP sockets on a NIC (``afxdp``), a DPDK port -- NIC or vdev -- through the
C program ``hugering-dpdk`` (``dpdk``); pcap replay is ``engine.replay``."""
