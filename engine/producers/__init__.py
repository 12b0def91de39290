"""Producers that fill rings: synthetic traffic now; pcap replay, AF_XDP and DPDK later."""
