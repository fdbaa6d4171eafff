/* certforge ca — CA ceremonies (next commit). */
#include "cli.h"
#include "commands.h"

int cmd_ca(int argc, char **argv)
{
    return cli_fail("ca: not implemented yet");
}
