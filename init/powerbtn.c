/* Power button via evdev: the ACPI button driver (LNXPWRBN) exposes an input device
 * that sends KEY_POWER, which is what QMP system_powerdown and cloud "stop" press. */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/ioctl.h>

#include <linux/input.h>

#include "log.h"
#include "powerbtn.h"

#define BITS_PER_LONG (8 * sizeof(long))
#define NLONGS(n)     (((n) + BITS_PER_LONG - 1) / BITS_PER_LONG)

static bool has_key_power(int fd)
{
	unsigned long keys[NLONGS(KEY_MAX + 1)] = {0};

	if (ioctl(fd, EVIOCGBIT(EV_KEY, sizeof(keys)), keys) < 0)
		return false;
	return keys[KEY_POWER / BITS_PER_LONG] & (1UL << (KEY_POWER % BITS_PER_LONG));
}

int powerbtn_open(int fds[POWERBTN_MAX], char *first_path, size_t pathlen)
{
	struct dirent *de;
	DIR *d;
	int n = 0;

	if (pathlen)
		first_path[0] = '\0';
	d = opendir("/dev/input");
	if (!d)
		return 0;
	while (n < POWERBTN_MAX && (de = readdir(d))) {
		char path[300];
		int fd;

		if (!startswith(de->d_name, "event"))
			continue;
		snprintf(path, sizeof(path), "/dev/input/%s", de->d_name);
		fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
		if (fd < 0)
			continue;
		if (!has_key_power(fd)) {
			close(fd);
			continue;
		}
		if (n == 0 && pathlen)
			snprintf(first_path, pathlen, "%s", path);
		fds[n++] = fd;
	}
	closedir(d);
	return n;
}

int powerbtn_pressed(int fd)
{
	struct input_event ev[16];
	int pressed = 0;
	ssize_t r;

	while ((r = read(fd, ev, sizeof(ev))) > 0)
		for (size_t i = 0; i < (size_t)r / sizeof(ev[0]); i++)
			if (ev[i].type == EV_KEY && ev[i].code == KEY_POWER &&
			    ev[i].value == 1)
				pressed = 1;
	return pressed;
}
