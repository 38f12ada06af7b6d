202103040506 72537 1712121 3976  630    12 45  3   4                                   12  24                                             12345678
$1 shadow line that readers skip
ALPHANC  VHZ IPU0202103040506  921  -6                                      32             199
BETA NC  VHZ EPD2202103040506 1055        1310ES 1  11                                                         01
GAMMANC  VHN ES 3202103040506 1400
DELTANC      EP 4202103040506 1100
EPSILNC      IP 0202113040506 1100
ZETA NC      IP 1202103040506 1200           0   0
                                                                12345678
202103040600599012S3000 45E1500 1000              10
ALPHANC      IP 0202103040600 6212
ALPHANC      IP 1202103040600 6250

