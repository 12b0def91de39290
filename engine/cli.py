def main(argv=None):
    raise SystemExit("hugering: the command line is being written")
