# swiftq: build and install swiftqd and swiftqctl.
#
#   make                      release build (dev/build-release): static, non-PIE executables linked by lld with
#                             functions in the order the daemon runs them, the very binary bench/run measures;
#                             where a C library has no static archive, non-PIE with the Swift runtime static (then
#                             Debian's librabbitmq4, libhiredis0.14, libyaml-0-2 and libstdc++6 are needed at run
#                             time)
#   sudo make install         into PREFIX (default /usr/local); DESTDIR=/tmp/pkg for a staging tree
#   sudo make uninstall       removes what install put, except a configuration file that was edited
#
# Layout (PREFIX=/usr/local):
#   $(PREFIX)/sbin/swiftqd, $(PREFIX)/bin/swiftqctl                                     0755
#   $(UNITDIR)/swiftqd.service, swiftqd@.service                                       0644
#       UNITDIR is $(PREFIX)/lib/systemd/system, or /lib/systemd/system when PREFIX=/usr (Debian's place for
#       packaged units). The units are generated at install time: ExecStart names $(PREFIX)/sbin/swiftqd.
#   $(PREFIX)/lib/sysusers.d/swiftq.conf, $(PREFIX)/lib/tmpfiles.d/swiftq.conf           0644
#   $(PREFIX)/share/man/man{1,5,8}/…                                                    0644
#   bash, zsh and fish completions for swiftqctl and swiftqd under $(PREFIX)/share       0644
#   /etc/swiftq/config.yaml   always under /etc, whatever PREFIX. An existing file is never overwritten: if it
#       differs from the shipped sample, the sample is installed next to it as config.yaml.new. Mode 0640; when
#       installing as root, group swiftq (created with systemd-sysusers first when DESTDIR is empty), so that
#       the daemon's user can read it and nobody else can.
#
# systemd finds units, sysusers.d and tmpfiles.d entries under /usr/local/lib as well as /usr/lib. After a real
# install: systemd-sysusers; systemd-tmpfiles --create; systemctl daemon-reload; systemctl enable --now swiftqd.

PREFIX ?= /usr/local
DESTDIR ?=
SWIFT ?= swift
SCRATCH ?= .build-static

SBINDIR = $(PREFIX)/sbin
BINDIR = $(PREFIX)/bin
MANDIR = $(PREFIX)/share/man
ifeq ($(PREFIX),/usr)
UNITDIR ?= /lib/systemd/system
else
UNITDIR ?= $(PREFIX)/lib/systemd/system
endif
SYSUSERSDIR = $(PREFIX)/lib/sysusers.d
TMPFILESDIR = $(PREFIX)/lib/tmpfiles.d
BASHCOMPDIR = $(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR = $(PREFIX)/share/zsh/site-functions
FISHCOMPDIR = $(PREFIX)/share/fish/vendor_completions.d
CONFDIR = /etc/swiftq

BUILT = $(SCRATCH)/release
COMPLETIONS = $(SCRATCH)/completions
PROGRAMS = swiftqctl swiftqd
UNITS = swiftqd.service swiftqd@.service
MANPAGES = man/swiftqctl.1 man/swiftq.yaml.5 man/swiftqd.8
INSTALL = install

.PHONY: all build completions install uninstall clean

all: build

build:
	SWIFT="$(SWIFT)" SCRATCH="$(SCRATCH)" dev/build-release >/dev/null

# argument-parser writes each shell's completion script.
completions: build
	mkdir -p $(COMPLETIONS)
	for program in $(PROGRAMS); do \
	    $(BUILT)/$$program --generate-completion-script bash >$(COMPLETIONS)/$$program.bash && \
	    $(BUILT)/$$program --generate-completion-script zsh >$(COMPLETIONS)/_$$program && \
	    $(BUILT)/$$program --generate-completion-script fish >$(COMPLETIONS)/$$program.fish || exit 1; \
	done

install: build completions
	$(INSTALL) -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(BINDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSUSERSDIR) \
	    $(DESTDIR)$(TMPFILESDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8 \
	    $(DESTDIR)$(BASHCOMPDIR) $(DESTDIR)$(ZSHCOMPDIR) $(DESTDIR)$(FISHCOMPDIR) $(DESTDIR)$(CONFDIR)
	$(INSTALL) -m 0755 $(BUILT)/swiftqd $(DESTDIR)$(SBINDIR)/swiftqd
	$(INSTALL) -m 0755 $(BUILT)/swiftqctl $(DESTDIR)$(BINDIR)/swiftqctl
	for unit in $(UNITS); do \
	    sed 's#/usr/sbin/swiftqd#$(SBINDIR)/swiftqd#g' systemd/$$unit >$(DESTDIR)$(UNITDIR)/$$unit && \
	    chmod 0644 $(DESTDIR)$(UNITDIR)/$$unit || exit 1; \
	done
	$(INSTALL) -m 0644 systemd/sysusers.d/swiftq.conf $(DESTDIR)$(SYSUSERSDIR)/swiftq.conf
	$(INSTALL) -m 0644 systemd/tmpfiles.d/swiftq.conf $(DESTDIR)$(TMPFILESDIR)/swiftq.conf
	$(INSTALL) -m 0644 man/swiftqctl.1 $(DESTDIR)$(MANDIR)/man1/swiftqctl.1
	$(INSTALL) -m 0644 man/swiftq.yaml.5 $(DESTDIR)$(MANDIR)/man5/swiftq.yaml.5
	$(INSTALL) -m 0644 man/swiftqd.8 $(DESTDIR)$(MANDIR)/man8/swiftqd.8
	for program in $(PROGRAMS); do \
	    $(INSTALL) -m 0644 $(COMPLETIONS)/$$program.bash $(DESTDIR)$(BASHCOMPDIR)/$$program && \
	    $(INSTALL) -m 0644 $(COMPLETIONS)/_$$program $(DESTDIR)$(ZSHCOMPDIR)/_$$program && \
	    $(INSTALL) -m 0644 $(COMPLETIONS)/$$program.fish $(DESTDIR)$(FISHCOMPDIR)/$$program.fish || exit 1; \
	done
	@if [ "$$(id -u)" = 0 ] && [ -z "$(DESTDIR)" ] && ! getent group swiftq >/dev/null; then \
	    echo "systemd-sysusers $(SYSUSERSDIR)/swiftq.conf"; \
	    systemd-sysusers $(SYSUSERSDIR)/swiftq.conf; \
	fi
	@config=$(DESTDIR)$(CONFDIR)/config.yaml; \
	if [ ! -e "$$config" ]; then \
	    $(INSTALL) -m 0640 etc/swiftq/config.yaml "$$config" && echo "installed $$config"; \
	elif cmp -s etc/swiftq/config.yaml "$$config"; then \
	    echo "kept $$config (unchanged)"; \
	else \
	    $(INSTALL) -m 0640 etc/swiftq/config.yaml "$$config.new"; \
	    echo "kept $$config (edited); the shipped sample is $$config.new"; \
	fi; \
	if [ "$$(id -u)" = 0 ] && getent group swiftq >/dev/null; then \
	    chgrp swiftq "$$config" $$(ls "$$config.new" 2>/dev/null); \
	fi

uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/swiftqd $(DESTDIR)$(BINDIR)/swiftqctl
	for unit in $(UNITS); do rm -f $(DESTDIR)$(UNITDIR)/$$unit; done
	rm -f $(DESTDIR)$(SYSUSERSDIR)/swiftq.conf $(DESTDIR)$(TMPFILESDIR)/swiftq.conf
	rm -f $(DESTDIR)$(MANDIR)/man1/swiftqctl.1 $(DESTDIR)$(MANDIR)/man5/swiftq.yaml.5 \
	    $(DESTDIR)$(MANDIR)/man8/swiftqd.8
	for program in $(PROGRAMS); do \
	    rm -f $(DESTDIR)$(BASHCOMPDIR)/$$program $(DESTDIR)$(ZSHCOMPDIR)/_$$program \
	        $(DESTDIR)$(FISHCOMPDIR)/$$program.fish; \
	done
	rm -f $(DESTDIR)$(CONFDIR)/config.yaml.new
	@config=$(DESTDIR)$(CONFDIR)/config.yaml; \
	if cmp -s etc/swiftq/config.yaml "$$config"; then \
	    rm -f "$$config"; rmdir $(DESTDIR)$(CONFDIR) 2>/dev/null || true; \
	elif [ -e "$$config" ]; then \
	    echo "kept $$config (edited)"; \
	fi

clean:
	rm -rf $(SCRATCH)
