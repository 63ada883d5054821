# The KVM probe's guest: a 512-byte boot sector (SeaBIOS loads it at 0x7c00)
# that does what every kernel does first, then reports through QEMU's
# isa-debug-exit device (exit status = (value << 1) | 1):
#   - switches from real mode to 64-bit long mode (page tables, CR4.PAE,
#     EFER.LME through wrmsr, CR0.PG), identity-mapping the first GiB;
#   - writes one qword into each 4 KiB page from 16 MiB to 48 MiB and reads
#     them back;
#   - counts down from 100 million (plain computation);
#   - exits with 0x2a (status 85) when all match, 0x15 (status 43) otherwise.
# The probe runs it under TCG and under KVM and uses KVM only if KVM is the
# faster: native execution finishes in a few milliseconds where TCG needs a
# good fraction of a second, but some hosts create KVM vCPUs fine and then
# run guests at a crawl (nested virtualization: a Linux kernel never gets
# through its decompressor), which only running guest code shows.
#
# Rebuild kvm_probe.bin (checked in, so no assembler is needed to build):
#   as --32 -o /tmp/p.o src/driver/qemu/kvm_probe.S
#   ld -m elf_i386 --oformat binary -e 0 -Ttext 0 -o src/driver/qemu/kvm_probe.bin /tmp/p.o
.code16
.org 0
start:
    cli
    xor %ax, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov $0x7c00, %sp
    # Page tables: PML4 at 0x1000, PDPT at 0x2000, PD at 0x3000 (zeroed first).
    mov $0x1000, %di
    mov $0x3000, %cx
    xor %eax, %eax
    rep stosb
    movl $0x2003, 0x1000
    movl $0x3003, 0x2000
    # 512 PD entries of 2 MiB pages (present, writable, huge): the first GiB.
    mov $0x3000, %di
    mov $0x83, %eax
fill_pd:
    mov %eax, (%di)
    movl $0, 4(%di)
    add $0x200000, %eax
    add $8, %di
    cmp $0x4000, %di
    jne fill_pd
    mov %cr4, %eax
    or $0x20, %eax
    mov %eax, %cr4
    mov $0x1000, %eax
    mov %eax, %cr3
    mov $0xC0000080, %ecx
    rdmsr
    or $0x100, %eax
    wrmsr
    lgdtl gdtr - start + 0x7c00
    mov %cr0, %eax
    or $0x80000001, %eax
    mov %eax, %cr0
    ljmpl $0x08, $(long64 - start + 0x7c00)
.code64
long64:
    mov $0x10, %ax
    mov %ax, %ds
    mov $0x1000000, %rdi
write:
    mov %rdi, (%rdi)
    add $0x1000, %rdi
    cmp $0x3000000, %rdi
    jne write
    mov $0x1000000, %rdi
check:
    cmp %rdi, (%rdi)
    jne bad
    add $0x1000, %rdi
    cmp $0x3000000, %rdi
    jne check
    # Plain computation: what KVM runs natively and TCG must translate.
    mov $100000000, %rcx
spin:
    dec %rcx
    jnz spin
    mov $0x2a, %al
    out %al, $0xf4
    hlt
bad:
    mov $0x15, %al
    out %al, $0xf4
    hlt
.align 8
gdt:
    .quad 0
    .quad 0x00209A0000000000
    .quad 0x0000920000000000
gdtr:
    .word gdtr - gdt - 1
    .long gdt - start + 0x7c00
.org 510
    .word 0xAA55
