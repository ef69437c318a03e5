// One step's recurrent product as lstmx's AVX-512 tiles run it (8 x 32 tiles, strips of 32
// columns of B packed k-major, A packed per row tile), one thread; B (the strips) from L3, or
// from memory when EV MiB are read between steps. MODE 0: no prefetch of B; 1: each tile
// fetches its share of the next strip, spread over its k steps, with prefetcht1; 2: the same
// with prefetcht0; 3: the share in one burst at the tile's start. Only the products are timed.
// gcc -O3 -march=native; ./a.out M K N STEPS MODE DIST EV  (next-strip-prefetch-microbenchmark.txt)
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#define MR 8
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+1e-9*t.tv_nsec;}
static int MODE, DIST;
static inline void tile(long kc,const float*A,const float*B,float*C,long ldc,const char*pf,long npf){
  __m512 acc[MR][2];
  for(int r=0;r<MR;r++){__builtin_prefetch(C+r*ldc,1,3);__builtin_prefetch(C+r*ldc+31,1,3);}
  for(int r=0;r<MR;r++){acc[r][0]=_mm512_setzero_ps();acc[r][1]=_mm512_setzero_ps();}
  if (MODE==3) { for (long l=0;l<npf;l++) _mm_prefetch(pf + 64*l, _MM_HINT_T0); npf = 0; }
  long every = npf ? (kc + npf - 1) / npf : 1 << 30, next = 0, done = 0;
  for(long p=0;p<kc;p++){
    if (p == next && done < npf) { if(MODE==2) _mm_prefetch(pf + 64 * done, _MM_HINT_T0); else _mm_prefetch(pf + 64 * done, _MM_HINT_T1); done++; next += every; }
    __m512 b0=_mm512_loadu_ps(B+p*32), b1=_mm512_loadu_ps(B+p*32+16);
    #pragma GCC unroll 16
    for(int r=0;r<MR;r++){__m512 a=_mm512_set1_ps(A[p*MR+r]);
      acc[r][0]=_mm512_fmadd_ps(a,b0,acc[r][0]);acc[r][1]=_mm512_fmadd_ps(a,b1,acc[r][1]);}
  }
  for(int r=0;r<MR;r++){ _mm512_storeu_ps(C+r*ldc,acc[r][0]); _mm512_storeu_ps(C+r*ldc+16,acc[r][1]);}
}
int main(int argc,char**argv){
  long M=atol(argv[1]),K=atol(argv[2]),N=atol(argv[3]),steps=atol(argv[4]); MODE=atoi(argv[5]); DIST=argc>6?atoi(argv[6]):1;
  long Mt=M/MR*MR, tiles=Mt/MR, ns=N/32;
  float*Ap=aligned_alloc(64,sizeof(float)*M*K);
  float*B=aligned_alloc(64,sizeof(float)*K*N), *C=aligned_alloc(64,sizeof(float)*M*N);
  for(long i=0;i<M*K;i++)Ap[i]=1e-3f*(i%97); for(long i=0;i<K*N;i++)B[i]=1e-3f*(i%89);memset(C,0,4*M*N);
  long lines = K*32*4/64, per = (lines + tiles - 1) / tiles;
  double best=1e9; long EV=argc>7?atol(argv[7]):0; char*ev=EV?malloc(EV<<20):0; if(ev) memset(ev,1,EV<<20);
  for(int rep=0;rep<9;rep++){ double tt=0;
   for(long st=0;st<steps;st++){
    if(ev){ volatile char s=0; for(long i=0;i<(EV<<20);i+=64) s+=ev[i]; }
    double t0=now();
    for(long s=0;s<ns;s++){ const float*strip=B+s*K*32;
      const char*nx = (const char*)(B+((s+DIST)%ns)*K*32);
      for(long t=0;t<tiles;t++){
        long from = t*per, cnt = from >= lines ? 0 : (from+per>lines? lines-from: per);
        tile(K,Ap+t*MR*K,strip,C+t*MR*N+s*32,N, nx + 64*from, MODE? cnt: 0);}}
    tt+=now()-t0;}
   double t=tt; if(t<best)best=t;}
  printf("mode=%d dist=%d M=%ld K=%ld N=%ld: %.1f GF/s (%.1f%% of 115.4)\n",MODE,DIST,M,K,N,2.0*Mt*K*N*steps/best/1e9,100*2.0*Mt*K*N*steps/best/1e9/115.4);
}
